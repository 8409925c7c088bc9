// rb-socket-activate: does for one command what systemd does for a .socket unit and its
// service, so that tests and the demo reproduce a systemd deployment without systemd:
//  - binds and listens on each socket, as root if it runs as root (systemd's sockets are
//    created by PID 1, as root), with SO_REUSEADDR and, when asked, SO_REUSEPORT (ReusePort=);
//  - passes them as fds 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID;
//  - optionally gives the command a NOTIFY_SOCKET and writes what it reports to a file;
//  - optionally runs the command as another user (User=), after the sockets exist;
//  - stays the command's parent: forwards signals to it and exits with its status.
// systemd-socket-activate(1) can't set SO_REUSEPORT nor drop privileges, hence this tool.
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace rb::tools {
namespace {

constexpr const char* kUsage =
    "rb-socket-activate: pass listening sockets to a command the way systemd does (socket\n"
    "activation), so that a systemd deployment can be reproduced without systemd.\n"
    "\n"
    "Usage:\n"
    "  rb-socket-activate [OPTION]... [--] COMMAND [ARG]...\n"
    "\n"
    "Options:\n"
    "  --tcp [HOST:]PORT[,reuseport][,name=NAME][,backlog=N]\n"
    "        listen on TCP (SO_REUSEADDR; SO_REUSEPORT with 'reuseport', like ReusePort=true).\n"
    "        HOST is an IPv4 address, an IPv6 address in brackets ([::1]:6432) or a name;\n"
    "        without it the socket listens on every address, IPv4 and IPv6.\n"
    "  --unix PATH[,mode=0666][,name=NAME][,backlog=N]\n"
    "        listen on a unix socket; a stale socket file at PATH (nothing answers on it) is\n"
    "        removed first. A leading '@' means the abstract namespace.\n"
    "  --notify-log FILE\n"
    "        give the command a NOTIFY_SOCKET and append every field it sends there\n"
    "        (READY=1, STATUS=..., STOPPING=1) to FILE, one line each, as it arrives\n"
    "  --user USER\n"
    "        run the command as USER (with its groups), after the sockets are made, as\n"
    "        systemd's User= does with the sockets of its socket unit\n"
    "  -v, --verbose\n"
    "        say on stderr which socket became which fd\n"
    "  -h, --help\n"
    "        show this help, then exit\n"
    "\n"
    "Sockets are passed in the order given, as fds 3, 4, ..., with LISTEN_FDS, LISTEN_PID and\n"
    "LISTEN_FDNAMES (the names joined by ':'; \"unknown\" for a socket without a name). Every\n"
    "other fd above 2 is closed in the command. The launcher stays the command's parent: it\n"
    "forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to it (except those a\n"
    "terminal sent, which reach the command through its process group already), and exits with\n"
    "the command's exit code, or 128+N when signal N killed it.\n"
    "\n"
    "Example:\n"
    "  rb-socket-activate --tcp 127.0.0.1:6432,name=main --unix /tmp/.s.PGSQL.6432,name=local \\\n"
    "      --notify-log /tmp/notify.log --user postgres -- ringbouncer pgbouncer.ini\n";

constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START
constexpr int kExitUsage = 2;
constexpr int kExitSetup = 1;
constexpr int kExitCannotExecute = 126;  // as shells report it
constexpr int kExitNotFound = 127;
constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
constexpr size_t kMaxFdNameLength = 255;  // systemd's FDNAME_MAX

bool verbose = false;

void Say(const std::string& message) { fprintf(stderr, "rb-socket-activate: %s\n", message.c_str()); }

std::string ErrnoText(absl::string_view what) { return absl::StrCat(what, ": ", strerror(errno)); }

struct SocketSpec {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string text;  // the option's value, for messages
  std::string host;  // kTcp: empty means every address
  std::string port;  // kTcp
  bool reuseport = false;
  std::string path;  // kUnix
  mode_t mode = 0666;  // systemd's SocketMode= default
  std::string name = "unknown";  // what sd_listen_fds_with_names() reports for an unnamed fd
  int backlog = SOMAXCONN;       // systemd's Backlog= default
};

// systemd accepts printable ASCII without ':' (the separator in LISTEN_FDNAMES).
bool ValidFdName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxFdNameLength) return false;
  for (char c : name) {
    if (c < 0x21 || c > 0x7e || c == ':') return false;
  }
  return true;
}

// The ",key[=value]" options after the address; which keys are allowed depends on the kind.
absl::Status ParseSocketOptions(const std::vector<absl::string_view>& parts, SocketSpec* spec) {
  for (size_t i = 1; i < parts.size(); ++i) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
    absl::string_view key = kv.first, value = kv.second;
    bool has_value = parts[i].find('=') != absl::string_view::npos;
    if (key == "name" && has_value) {
      if (!ValidFdName(value)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "invalid name \"", value, "\": 1 to 255 printable characters, no ':' and no spaces"));
      }
      spec->name = std::string(value);
    } else if (key == "backlog" && has_value) {
      if (!absl::SimpleAtoi(value, &spec->backlog) || spec->backlog <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("invalid backlog \"", value, "\""));
      }
    } else if (key == "reuseport" && !has_value && spec->kind == SocketSpec::Kind::kTcp) {
      spec->reuseport = true;
    } else if (key == "mode" && has_value && spec->kind == SocketSpec::Kind::kUnix) {
      unsigned long mode = 0;
      char* end = nullptr;
      std::string text(value);
      errno = 0;
      mode = strtoul(text.c_str(), &end, 8);
      if (text.empty() || *end != '\0' || errno != 0 || mode > 07777) {
        return absl::InvalidArgumentError(absl::StrCat("invalid mode \"", value, "\" (octal, e.g. 0660)"));
      }
      spec->mode = static_cast<mode_t>(mode);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown option \"", parts[i], "\" (", spec->kind == SocketSpec::Kind::kTcp ? "--tcp takes reuseport, name=NAME, backlog=N" : "--unix takes mode=OCTAL, name=NAME, backlog=N", ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SocketSpec> ParseTcp(absl::string_view arg) {
  SocketSpec spec;
  spec.kind = SocketSpec::Kind::kTcp;
  spec.text = std::string(arg);
  std::vector<absl::string_view> parts = absl::StrSplit(arg, ',');
  absl::string_view address = parts[0];
  absl::string_view port = address;
  if (absl::StartsWith(address, "[")) {
    size_t close = address.find("]:");
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("an IPv6 address is written [ADDRESS]:PORT");
    }
    spec.host = std::string(address.substr(1, close - 1));
    port = address.substr(close + 2);
  } else if (size_t colon = address.rfind(':'); colon != absl::string_view::npos) {
    spec.host = std::string(address.substr(0, colon));
    port = address.substr(colon + 1);
    if (spec.host.find(':') != std::string::npos) {
      return absl::InvalidArgumentError("write an IPv6 address in brackets: [ADDRESS]:PORT");
    }
    if (spec.host.empty()) return absl::InvalidArgumentError("empty host before ':'");
  }
  int number = 0;
  if (!absl::SimpleAtoi(port, &number) || number < 1 || number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("invalid port \"", port, "\" (1-65535)"));
  }
  spec.port = std::to_string(number);
  if (absl::Status s = ParseSocketOptions(parts, &spec); !s.ok()) return s;
  return spec;
}

absl::StatusOr<SocketSpec> ParseUnix(absl::string_view arg) {
  SocketSpec spec;
  spec.kind = SocketSpec::Kind::kUnix;
  spec.text = std::string(arg);
  std::vector<absl::string_view> parts = absl::StrSplit(arg, ',');
  spec.path = std::string(parts[0]);
  if (spec.path.empty() || spec.path == "@") return absl::InvalidArgumentError("empty path");
  if (spec.path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("path too long (", spec.path.size(), " bytes; a unix socket path has at most ",
                     sizeof(sockaddr_un::sun_path) - 1, ")"));
  }
  if (absl::Status s = ParseSocketOptions(parts, &spec); !s.ok()) return s;
  return spec;
}

std::string DescribeAddress(const sockaddr* addr) {
  char host[NI_MAXHOST] = {0}, port[NI_MAXSERV] = {0};
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (getnameinfo(addr, len, host, sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  return addr->sa_family == AF_INET6 ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

absl::StatusOr<int> ListenOnAddress(const SocketSpec& spec, const sockaddr* addr, socklen_t len) {
  // Blocking, as systemd passes them unless NonBlocking=true: the receiver must cope with that.
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(ErrnoText("socket"));
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (spec.reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)) {
    absl::Status s = absl::InternalError(ErrnoText("setsockopt"));
    close(fd);
    return s;
  }
  if (addr->sa_family == AF_INET6 && spec.host.empty()) {
    // "Every address": one dual-stack socket, as systemd binds ListenStream=PORT.
    int zero = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  }
  if (bind(fd, addr, len) != 0 || listen(fd, spec.backlog) != 0) {
    absl::Status s = absl::InternalError(ErrnoText(absl::StrCat("bind/listen ", DescribeAddress(addr))));
    close(fd);
    return s;
  }
  return fd;
}

absl::StatusOr<int> ListenTcp(const SocketSpec& spec) {
  if (spec.host.empty()) {
    uint16_t port = htons(static_cast<uint16_t>(std::stoi(spec.port)));
    int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
      close(probe);
      sockaddr_in6 any6{};
      any6.sin6_family = AF_INET6;
      any6.sin6_addr = in6addr_any;
      any6.sin6_port = port;
      return ListenOnAddress(spec, reinterpret_cast<sockaddr*>(&any6), sizeof(any6));
    }
    sockaddr_in any4{};  // a kernel without IPv6
    any4.sin_family = AF_INET;
    any4.sin_addr.s_addr = htonl(INADDR_ANY);
    any4.sin_port = port;
    return ListenOnAddress(spec, reinterpret_cast<sockaddr*>(&any4), sizeof(any4));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  int rc = getaddrinfo(spec.host.c_str(), spec.port.c_str(), &hints, &list);
  if (rc != 0) return absl::InvalidArgumentError(absl::StrCat("cannot resolve \"", spec.host, "\": ", gai_strerror(rc)));
  // The first address only: a unit's ListenStream= is one socket, and so is each --tcp.
  absl::StatusOr<int> fd = ListenOnAddress(spec, list->ai_addr, list->ai_addrlen);
  freeaddrinfo(list);
  return fd;
}

absl::StatusOr<int> ListenUnix(const SocketSpec& spec) {
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  bool abstract = spec.path[0] == '@';
  memcpy(sun.sun_path, spec.path.data(), spec.path.size());
  if (abstract) sun.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + spec.path.size() + (abstract ? 0 : 1));
  if (!abstract) {
    struct stat st;
    if (lstat(spec.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return absl::AlreadyExistsError(absl::StrCat(spec.path, " exists and is not a socket; not removing it"));
      }
      // Stale means nothing accepts there. Non-blocking: a live listener with a full backlog
      // answers EAGAIN rather than making us wait.
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      bool live = probe >= 0 && (connect(probe, reinterpret_cast<sockaddr*>(&sun), len) == 0 || errno == EAGAIN);
      if (probe >= 0) close(probe);
      if (live) return absl::AlreadyExistsError(absl::StrCat(spec.path, " is in use: something accepts on it"));
      if (unlink(spec.path.c_str()) != 0) return absl::InternalError(ErrnoText(absl::StrCat("unlink ", spec.path)));
    }
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(ErrnoText("socket"));
  if (bind(fd, reinterpret_cast<sockaddr*>(&sun), len) != 0 ||
      (!abstract && chmod(spec.path.c_str(), spec.mode) != 0) || listen(fd, spec.backlog) != 0) {
    absl::Status s = absl::InternalError(ErrnoText(absl::StrCat("bind/listen ", spec.path)));
    close(fd);
    return s;
  }
  return fd;
}

// A datagram socket with a kernel-chosen abstract name ("autobind"): unique, nothing to clean
// up, and reachable by the command after it drops to another user (abstract sockets have no
// file permissions). Returns the fd; *address is the NOTIFY_SOCKET value ("@xxxxx").
absl::StatusOr<int> OpenNotifySocket(std::string* address) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(ErrnoText("notify socket"));
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sa_family_t)) != 0) {
    absl::Status s = absl::InternalError(ErrnoText("bind notify socket"));
    close(fd);
    return s;
  }
  socklen_t len = sizeof(sun);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sun), &len) != 0 || len <= offsetof(sockaddr_un, sun_path) + 1) {
    absl::Status s = absl::InternalError(ErrnoText("getsockname notify socket"));
    close(fd);
    return s;
  }
  *address = absl::StrCat("@", absl::string_view(sun.sun_path + 1, len - offsetof(sockaddr_un, sun_path) - 1));
  return fd;
}

// Reads every queued datagram and appends its fields to the log, one write per datagram so a
// reader never sees half of one message's lines at the end of the file for long.
void DrainNotifications(int notify_fd, int log_fd) {
  char buf[65536];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 64)];
  for (;;) {
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(notify_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // EAGAIN: drained
    }
    // FDSTORE=1 may come with fds; we don't keep a store, so don't leak them.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        close(fd);
      }
    }
    std::string lines;
    for (absl::string_view field : absl::StrSplit(absl::string_view(buf, static_cast<size_t>(n)), '\n')) {
      if (!field.empty()) absl::StrAppend(&lines, field, "\n");
    }
    if (verbose) Say(absl::StrCat("notify: ", absl::StrJoin(absl::StrSplit(lines, '\n', absl::SkipEmpty()), " ")));
    const char* p = lines.data();
    size_t left = lines.size();
    while (left > 0) {
      ssize_t w = write(log_fd, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      p += w;
      left -= static_cast<size_t>(w);
    }
  }
}

// Makes sure fds 0-2 are open, so that no socket we create lands there and is then taken for
// the command's stdin or stdout.
void EnsureStdFds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) >= 0) continue;
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd >= 0 && null_fd != fd) {
      dup2(null_fd, fd);
      close(null_fd);
    }
  }
}

struct Options {
  std::vector<SocketSpec> sockets;
  std::string notify_log;
  std::string user;
  std::vector<char*> command;
};

// Runs in the child between fork and exec. The launcher has a single thread, so malloc and
// setenv are safe here.
[[noreturn]] void ExecCommand(const Options& options, const std::vector<int>& fds, const std::string& names,
                              const std::string& notify_address, const passwd* pw, pid_t parent,
                              const sigset_t& original_mask) {
  auto fail = [](const char* what, int code) {
    fprintf(stderr, "rb-socket-activate: %s: %s\n", what, strerror(errno));
    _exit(code);
  };
  // Defaults for every signal, as systemd gives its services (ignored SIGINT from a
  // non-interactive shell's '&' must not leak into the command), and the original mask.
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  }
  sigprocmask(SIG_SETMASK, &original_mask, nullptr);

  // Move the sockets to 3, 4, ...: first above the target range, so that no dup2 overwrites a
  // socket still to be moved; then into place (dup2 leaves FD_CLOEXEC clear on the copy).
  const int n = static_cast<int>(fds.size());
  std::vector<int> high(fds.size());
  for (int i = 0; i < n; ++i) {
    high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, kListenFdsStart + n);
    if (high[i] < 0) fail("fcntl(F_DUPFD)", kExitSetup);
  }
  for (int i = 0; i < n; ++i) {
    if (dup2(high[i], kListenFdsStart + i) < 0) fail("dup2", kExitSetup);
  }
  // Nothing else leaks into the command: our copies, the notify socket, inherited fds.
  if (close_range(kListenFdsStart + n, ~0U, 0) != 0) {
    for (int fd = kListenFdsStart + n; fd < 65536; ++fd) close(fd);
  }

  if (pw) {
    if (initgroups(pw->pw_name, pw->pw_gid) != 0) fail("initgroups", kExitSetup);
    if (setgid(pw->pw_gid) != 0) fail("setgid", kExitSetup);
    if (setuid(pw->pw_uid) != 0) fail("setuid", kExitSetup);
    setenv("USER", pw->pw_name, 1);
    setenv("LOGNAME", pw->pw_name, 1);
    setenv("HOME", pw->pw_dir, 1);
    setenv("SHELL", pw->pw_shell, 1);
  }
  // If the launcher dies (SIGKILL), the command stops too, gracefully. Set after setuid, which
  // clears it; and the launcher may already be gone by now.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(kExitSetup);

  if (n > 0) {
    setenv("LISTEN_FDS", std::to_string(n).c_str(), 1);
    setenv("LISTEN_FDNAMES", names.c_str(), 1);
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
  } else {
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    unsetenv("LISTEN_PID");
  }
  if (!notify_address.empty()) setenv("NOTIFY_SOCKET", notify_address.c_str(), 1);

  execvp(options.command[0], options.command.data());
  int saved = errno;
  fprintf(stderr, "rb-socket-activate: cannot run %s: %s\n", options.command[0], strerror(saved));
  _exit(saved == ENOENT ? kExitNotFound : kExitCannotExecute);
}

int Run(int argc, char** argv) {
  enum { kTcp = 1000, kUnix, kNotifyLog, kUser };
  static const option long_options[] = {
      {"tcp", required_argument, nullptr, kTcp},
      {"unix", required_argument, nullptr, kUnix},
      {"notify-log", required_argument, nullptr, kNotifyLog},
      {"user", required_argument, nullptr, kUser},
      {"verbose", no_argument, nullptr, 'v'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0}};
  Options options;
  int c;
  // '+': stop at the command, so its own options are left alone even without "--".
  while ((c = getopt_long(argc, argv, "+vh", long_options, nullptr)) != -1) {
    switch (c) {
      case kTcp:
      case kUnix: {
        absl::StatusOr<SocketSpec> spec = c == kTcp ? ParseTcp(optarg) : ParseUnix(optarg);
        if (!spec.ok()) {
          Say(absl::StrCat(c == kTcp ? "--tcp " : "--unix ", optarg, ": ", spec.status().message()));
          return kExitUsage;
        }
        options.sockets.push_back(*std::move(spec));
        break;
      }
      case kNotifyLog:
        options.notify_log = optarg;
        break;
      case kUser:
        options.user = optarg;
        break;
      case 'v':
        verbose = true;
        break;
      case 'h':
        fputs(kUsage, stdout);
        return 0;
      default:
        fputs("Try \"rb-socket-activate --help\" for more information.\n", stderr);
        return kExitUsage;
    }
  }
  if (optind >= argc) {
    Say("no command given (usage: rb-socket-activate [OPTION]... -- COMMAND [ARG]...)");
    return kExitUsage;
  }
  for (int i = optind; i < argc; ++i) options.command.push_back(argv[i]);
  options.command.push_back(nullptr);

  EnsureStdFds();
  // An inherited SIG_IGN for SIGCHLD would make the kernel reap the command for us, and
  // waitpid would never see its status.
  signal(SIGCHLD, SIG_DFL);

  // Look the user up before binding anything, to fail early and clearly.
  passwd* pw = nullptr;
  if (!options.user.empty()) {
    errno = 0;
    pw = getpwnam(options.user.c_str());
    if (!pw) {
      Say(absl::StrCat("--user ", options.user, ": ", errno ? strerror(errno) : "no such user"));
      return kExitSetup;
    }
  }

  std::vector<int> fds;
  std::vector<std::string> names;
  for (size_t i = 0; i < options.sockets.size(); ++i) {
    const SocketSpec& spec = options.sockets[i];
    absl::StatusOr<int> fd = spec.kind == SocketSpec::Kind::kTcp ? ListenTcp(spec) : ListenUnix(spec);
    if (!fd.ok()) {
      Say(absl::StrCat(spec.kind == SocketSpec::Kind::kTcp ? "--tcp " : "--unix ", spec.text, ": ",
                       fd.status().message()));
      return kExitSetup;
    }
    fds.push_back(*fd);
    names.push_back(spec.name);
    if (verbose) {
      Say(absl::StrCat("fd ", kListenFdsStart + static_cast<int>(i), ": ",
                       spec.kind == SocketSpec::Kind::kTcp ? "tcp " : "unix ", spec.text));
    }
  }

  int notify_fd = -1, log_fd = -1;
  std::string notify_address;
  if (!options.notify_log.empty()) {
    log_fd = open(options.notify_log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      Say(ErrnoText(absl::StrCat("--notify-log ", options.notify_log)));
      return kExitSetup;
    }
    absl::StatusOr<int> fd = OpenNotifySocket(&notify_address);
    if (!fd.ok()) {
      Say(std::string(fd.status().message()));
      return kExitSetup;
    }
    notify_fd = *fd;
  }

  // Signals are blocked before the fork and read from a signalfd, so none is lost between the
  // fork and the loop; the child restores the original mask before exec.
  sigset_t mask, original_mask;
  sigemptyset(&mask);
  for (int sig : kForwardedSignals) sigaddset(&mask, sig);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, &original_mask);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    Say(ErrnoText("signalfd"));
    return kExitSetup;
  }

  fflush(nullptr);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0) {
    Say(ErrnoText("fork"));
    return kExitSetup;
  }
  if (child == 0) {
    ExecCommand(options, fds, absl::StrJoin(names, ":"), notify_address, pw, parent, original_mask);
  }
  if (verbose) Say(absl::StrCat("started ", options.command[0], " as pid ", child));
  // The command has its copies. Ours would keep queueing connections after it exits.
  for (int fd : fds) close(fd);

  for (;;) {
    pollfd pfds[2] = {{sfd, POLLIN, 0}, {notify_fd, POLLIN, 0}};
    if (poll(pfds, notify_fd >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      // Can't happen with valid fds; don't spin. Stop the command and report how it ended.
      Say(ErrnoText("poll"));
      kill(child, SIGTERM);
      int status = 0;
      waitpid(child, &status, 0);
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (notify_fd >= 0 && (pfds[1].revents & POLLIN)) DrainNotifications(notify_fd, log_fd);
    signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
      int sig = static_cast<int>(si.ssi_signo);
      if (sig != SIGCHLD) {
        // A terminal's Ctrl-C (SI_KERNEL) went to the whole foreground process group, the
        // command included: forwarding it too would count as a second SIGINT (fast exit).
        if (si.ssi_code == SI_KERNEL) continue;
        if (verbose) Say(absl::StrCat("forwarding signal ", sig, " (", strsignal(sig), ") to pid ", child));
        kill(child, sig);
        continue;
      }
      int status = 0;
      pid_t done = waitpid(child, &status, WNOHANG);
      if (done != child) continue;
      // What it said just before exiting (STOPPING=1) is still queued on the socket.
      if (notify_fd >= 0) DrainNotifications(notify_fd, log_fd);
      if (WIFEXITED(status)) {
        if (verbose) Say(absl::StrCat("pid ", child, " exited with code ", WEXITSTATUS(status)));
        return WEXITSTATUS(status);
      }
      int killer = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
      if (verbose) Say(absl::StrCat("pid ", child, " was killed by signal ", killer));
      return 128 + killer;
    }
  }
}

}  // namespace
}  // namespace rb::tools

int main(int argc, char** argv) { return rb::tools::Run(argc, argv); }
