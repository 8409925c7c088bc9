// Process, port and directory helpers for integration tests: start ringbouncer, psql, pgbench
// and friends, wait for them to listen, and make sure nothing outlives the test.
//
// Failures to set up (fork, exec, mkdtemp) throw std::runtime_error: Catch2 reports the message
// as the test's failure, which is what a test wants from its fixtures.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rb::test {

using std::chrono::milliseconds;

// Every member has an initializer, so designated initializers may name only what they need
// (GCC's -Wmissing-field-initializers is an error under -Werror otherwise).
struct SubprocessOptions {
  std::vector<std::string> argv{};  // argv[0] is looked up in PATH when it has no '/'
  // "KEY=VALUE" entries added to (or replacing in) the environment; "KEY" alone removes KEY.
  std::vector<std::string> env{};
  bool inherit_env = true;  // false: the child sees only `env`
  std::string cwd{};        // empty: the parent's
  // Where stdout/stderr go. Empty: an anonymous file, readable through Stdout()/Stderr().
  // Files rather than pipes, so that a chatty child never blocks on a full pipe.
  std::string stdout_path{};
  std::string stderr_path{};
  std::string stdin_data{};  // written to the child's stdin, which is then closed
};

// A child process in its own process group. The destructor kills the whole group (SIGKILL) and
// reaps the child, so a failing test leaves no ringbouncer or pgbench behind.
class Subprocess {
 public:
  explicit Subprocess(SubprocessOptions options);  // throws if fork or exec fails
  explicit Subprocess(std::vector<std::string> argv);
  ~Subprocess();
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t Pid() const { return pid_; }
  bool Running();
  // Waits for the child to exit. Returns its exit code, or -N when signal N killed it;
  // std::nullopt when it is still running after `timeout`.
  std::optional<int> Wait(milliseconds timeout);
  // Sends `signal` to the child (not its group: ringbouncer's own handling is what tests test).
  void Kill(int signal);
  // Sends SIGKILL to the group and reaps; returns the exit status as Wait does.
  int KillAndWait();

  std::string Stdout() const;
  std::string Stderr() const;
  // Polls the child's stdout+stderr until `needle` appears. False on timeout or if the child
  // exits without printing it.
  bool WaitForOutput(std::string_view needle, milliseconds timeout);

 private:
  void Reap(int status);

  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  int stdout_fd_ = -1;  // read side of the capture files (pread from 0)
  int stderr_fd_ = -1;
};

struct CommandResult {
  int exit_code = -1;  // as Subprocess::Wait; -1000 on timeout
  bool timed_out = false;
  std::string out;  // stdout (not named stdout: that is a macro)
  std::string err;  // stderr
};

// Runs argv to completion (killing it after `timeout`) and returns its exit code and output.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         milliseconds timeout = std::chrono::seconds(120),
                         const std::vector<std::string>& env = {});

// A TCP port on 127.0.0.1 that nothing listens on right now: bound to port 0, then released.
// The kernel hands out ephemeral ports (32768+) in a spread order, so parallel tests rarely
// collide; tools/pgtmp picks its ports below that range for the same reason.
int FreeTcpPort();

// True once something accepts TCP connections on host:port (host is a numeric IPv4 address).
bool WaitForTcpPort(const std::string& host, int port, milliseconds timeout);
// True once something accepts connections on the unix socket at `path`.
bool WaitForUnixSocket(const std::string& path, milliseconds timeout);

// A fresh directory under /tmp (short paths: unix socket paths are limited to 107 bytes),
// removed with everything in it when the TempDir goes away.
class TempDir {
 public:
  // chown_to_postgres: when running as root, hand the directory to the postgres user (PostgreSQL
  // and anything running as postgres can then write there).
  explicit TempDir(std::string_view prefix = "rb-test", bool chown_to_postgres = false);
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& Path() const { return path_; }
  // Path() + "/" + name.
  std::string File(std::string_view name) const;
  // Writes `contents` to File(name) and returns that path.
  std::string WriteFile(std::string_view name, std::string_view contents) const;

 private:
  std::string path_;
};

// Reads a whole file; throws if it can't be opened.
std::string ReadFile(const std::string& path);
// True while a process with this pid exists and is not a zombie.
bool ProcessAlive(pid_t pid);

}  // namespace rb::test
