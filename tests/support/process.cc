#include "tests/support/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace rb::test {
namespace {

using Clock = std::chrono::steady_clock;

// Not in glibc's headers on every Debian; the kernel has had it since 5.11.
constexpr unsigned kCloseRangeCloexec = 1u << 2;

[[noreturn]] void ThrowErrno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

// An unnamed file in /tmp: it disappears with its last fd, even if the test crashes.
int AnonymousFile() {
  int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  char name[] = "/tmp/rb-capture-XXXXXX";
  fd = mkostemp(name, O_CLOEXEC);
  if (fd < 0) ThrowErrno("mkostemp");
  unlink(name);
  return fd;
}

int OpenCapture(const std::string& path) {
  if (path.empty()) return AnonymousFile();
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) ThrowErrno("open " + path);
  return fd;
}

std::string ReadAll(int fd) {
  std::string out;
  if (fd < 0) return out;
  char buf[65536];
  off_t offset = 0;
  for (;;) {
    ssize_t n = pread(fd, buf, sizeof buf, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    offset += n;
  }
  return out;
}

std::vector<std::string> BuildEnv(const SubprocessOptions& options) {
  std::map<std::string, std::string> vars;
  auto key_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  if (options.inherit_env) {
    for (char** e = environ; *e != nullptr; ++e) vars[key_of(*e)] = *e;
  }
  for (const std::string& entry : options.env) {
    if (entry.find('=') == std::string::npos) {
      vars.erase(entry);
    } else {
      vars[key_of(entry)] = entry;
    }
  }
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (auto& [key, entry] : vars) out.push_back(std::move(entry));
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

Subprocess::Subprocess(std::vector<std::string> argv)
    : Subprocess(SubprocessOptions{.argv = std::move(argv)}) {}

Subprocess::Subprocess(SubprocessOptions options) {
  if (options.argv.empty()) throw std::invalid_argument("Subprocess: empty argv");
  const std::string what = "Subprocess(" + options.argv[0] + ")";

  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are allowed.
  std::vector<std::string> argv_strings = options.argv;
  std::vector<std::string> env_strings = BuildEnv(options);
  std::vector<char*> argv = CStrings(argv_strings);
  std::vector<char*> envp = CStrings(env_strings);

  stdout_fd_ = OpenCapture(options.stdout_path);
  stderr_fd_ = OpenCapture(options.stderr_path);
  int stdin_fd;
  if (options.stdin_data.empty()) {
    stdin_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (stdin_fd < 0) ThrowErrno(what + ": open /dev/null");
  } else {
    stdin_fd = AnonymousFile();
    if (pwrite(stdin_fd, options.stdin_data.data(), options.stdin_data.size(), 0) !=
        static_cast<ssize_t>(options.stdin_data.size())) {
      ThrowErrno(what + ": writing stdin");
    }
  }

  // exec failures come back through this pipe; a successful exec closes it (O_CLOEXEC).
  int status_pipe[2];
  if (pipe2(status_pipe, O_CLOEXEC) != 0) ThrowErrno(what + ": pipe2");

  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) ThrowErrno(what + ": fork");
  if (pid == 0) {
    // Own process group: the destructor can kill the child with whatever it spawned.
    setpgid(0, 0);
    // If the test process dies (abort, ctest timeout), take the child with it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    signal(SIGPIPE, SIG_DFL);
    dup2(stdin_fd, 0);
    dup2(stdout_fd_, 1);
    dup2(stderr_fd_, 2);
    // Leave no inherited fd open in the child (ctest's pipes, other tests' sockets): a
    // grandchild holding a pipe of ctest's would keep ctest waiting.
    syscall(SYS_close_range, 3u, ~0u, kCloseRangeCloexec);
    int err = 0;
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) {
      err = errno;
    } else {
      execvpe(argv[0], argv.data(), envp.data());
      err = errno;
    }
    ssize_t ignored = write(status_pipe[1], &err, sizeof err);
    (void)ignored;
    _exit(127);
  }

  pid_ = pid;
  close(stdin_fd);
  close(status_pipe[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(status_pipe[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(status_pipe[0]);
  if (n == sizeof child_errno) {
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    errno = child_errno;
    ThrowErrno(what + ": exec");
  }
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      exit_status_(std::exchange(other.exit_status_, std::nullopt)),
      stdout_fd_(std::exchange(other.stdout_fd_, -1)),
      stderr_fd_(std::exchange(other.stderr_fd_, -1)) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    this->~Subprocess();
    new (this) Subprocess(std::move(other));
  }
  return *this;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exit_status_) KillAndWait();
  if (stdout_fd_ >= 0) close(stdout_fd_);
  if (stderr_fd_ >= 0) close(stderr_fd_);
}

void Subprocess::Reap(int status) {
  exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

bool Subprocess::Running() {
  if (pid_ <= 0 || exit_status_) return false;
  int status;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    Reap(status);
    return false;
  }
  return true;
}

std::optional<int> Subprocess::Wait(milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!Running()) return exit_status_;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

void Subprocess::Kill(int signal) {
  if (pid_ > 0 && !exit_status_) kill(pid_, signal);
}

int Subprocess::KillAndWait() {
  if (pid_ <= 0) return -1;
  if (!exit_status_) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);  // in case setpgid had not run yet
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    Reap(status);
  }
  return *exit_status_;
}

std::string Subprocess::Stdout() const { return ReadAll(stdout_fd_); }
std::string Subprocess::Stderr() const { return ReadAll(stderr_fd_); }

bool Subprocess::WaitForOutput(std::string_view needle, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    bool running = Running();
    if (Stdout().find(needle) != std::string::npos ||
        Stderr().find(needle) != std::string::npos) {
      return true;
    }
    if (!running || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

CommandResult RunCommand(const std::vector<std::string>& argv, milliseconds timeout,
                         const std::vector<std::string>& env) {
  Subprocess process(SubprocessOptions{.argv = argv, .env = env});
  CommandResult result;
  if (std::optional<int> code = process.Wait(timeout)) {
    result.exit_code = *code;
  } else {
    process.KillAndWait();
    result.timed_out = true;
    result.exit_code = -1000;
  }
  result.out = process.Stdout();
  result.err = process.Stderr();
  return result;
}

int FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno("FreeTcpPort: socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    ThrowErrno("FreeTcpPort: bind");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

namespace {

bool PollConnect(const sockaddr* addr, socklen_t len, int family, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) ThrowErrno("socket");
    bool ok = connect(fd, addr, len) == 0;
    close(fd);
    if (ok) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

}  // namespace

bool WaitForTcpPort(const std::string& host, int port, milliseconds timeout) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    throw std::invalid_argument("WaitForTcpPort: not an IPv4 address: " + host);
  }
  return PollConnect(reinterpret_cast<sockaddr*>(&addr), sizeof addr, AF_INET, timeout);
}

bool WaitForUnixSocket(const std::string& path, milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    throw std::invalid_argument("WaitForUnixSocket: path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return PollConnect(reinterpret_cast<sockaddr*>(&addr), sizeof addr, AF_UNIX, timeout);
}

TempDir::TempDir(std::string_view prefix, bool chown_to_postgres) {
  std::string pattern = "/tmp/" + std::string(prefix) + "-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) ThrowErrno("mkdtemp " + pattern);
  path_ = pattern;
  if (chown_to_postgres && geteuid() == 0) {
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr) throw std::runtime_error("TempDir: no postgres user");
    if (chown(path_.c_str(), pw->pw_uid, pw->pw_gid) != 0) ThrowErrno("chown " + path_);
    if (chmod(path_.c_str(), 0755) != 0) ThrowErrno("chmod " + path_);
  }
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    this->~TempDir();
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

std::string TempDir::File(std::string_view name) const { return path_ + "/" + std::string(name); }

std::string TempDir::WriteFile(std::string_view name, std::string_view contents) const {
  std::string path = File(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  if (!out) throw std::runtime_error("TempDir: writing " + path + " failed");
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("ReadFile: cannot open " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool ProcessAlive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!stat || !std::getline(stat, line)) return false;
  // "pid (comm) S ...": comm may hold spaces and parentheses, so find the last ')'.
  size_t paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return false;
  char state = line[paren + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace rb::test
