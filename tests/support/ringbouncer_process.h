// RingbouncerProcess: build/engine/ringbouncer started for one test, with its own pgbouncer.ini,
// userlist.txt and unix socket directory in a TempDir, on a free TCP port of 127.0.0.1.
//
//   rb::test::PgCluster& pg = rb::test::PgCluster::Shared();
//   rb::test::RingbouncerProcess rb(pg, {.settings = {{"pool_mode", "session"}}});
//   REQUIRE(rb::test::Query(rb.ConnString("rb_md5"), "SELECT 1").Scalar() == "1");
//
// The constructor returns once the port accepts connections, and throws (with the log) if the
// process exits first or never listens. The destructor kills the process whatever happened, so
// a failing test leaves nothing running.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"

namespace rb::test {

struct RingbouncerOptions {
  // [pgbouncer] settings. They override the defaults that RingbouncerProcess writes (below); an
  // empty value removes a default line. listen_port, unix_socket_dir and auth_file are always
  // the process's own unless named here.
  std::map<std::string, std::string> settings{};
  // [databases] lines ("rbtest = host=127.0.0.1 port=5432 dbname=rbtest"). Empty: one line for
  // PgCluster's rbtest over TCP.
  std::vector<std::string> databases{};
  // [users] lines ("rb_md5 = pool_mode=session pool_size=2"). Empty: no [users] section.
  std::vector<std::string> users{};
  // userlist.txt lines ("\"user\" \"secret\""). Empty: DefaultUserlist(pg).
  std::vector<std::string> userlist{};
  std::vector<std::string> extra_args{};  // before the config path, e.g. {"-v"}
  std::chrono::milliseconds start_timeout = std::chrono::seconds(30);
};

// The settings every RingbouncerProcess starts from (before RingbouncerOptions::settings):
//   listen_addr 127.0.0.1, workers 4, auth_type md5, pool_mode transaction,
//   default_pool_size 20, max_client_conn 1000, ignore_startup_parameters extra_float_digits,
//   server_login_retry 1 (tests restart PostgreSQL: don't wait PgBouncer's 15 s to retry).
std::map<std::string, std::string> DefaultRingbouncerSettings();

// A userlist.txt line with a plain-text password: "user" "password".
std::string UserlistPlain(std::string_view user, std::string_view password);
// rb_md5 with its stored md5 secret, rb_scram with its stored SCRAM secret (both read from
// pg_authid through PgCluster::UserlistEntry), and rb_trust with an empty password.
std::vector<std::string> DefaultUserlist(const PgCluster& pg);
// [databases] line for PgCluster's rbtest over TCP, with optional extra key=value pairs.
std::string DatabaseLine(const PgCluster& pg, std::string_view name = kTestDb,
                         std::string_view extra = "");

// True if `needle` occurs in `haystack` (a log, an error message).
inline bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// Polls `condition` every `step` until it is true (returns true) or `timeout` passes (false).
bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = std::chrono::milliseconds(50));

class RingbouncerProcess {
 public:
  RingbouncerProcess(const PgCluster& pg, RingbouncerOptions options = {});
  ~RingbouncerProcess();
  RingbouncerProcess(const RingbouncerProcess&) = delete;
  RingbouncerProcess& operator=(const RingbouncerProcess&) = delete;

  int Port() const { return port_; }
  std::string Host() const { return "127.0.0.1"; }
  const std::string& SocketDir() const { return dir_.Path(); }
  const std::string& ConfigPath() const { return config_path_; }
  const std::string& ConfigText() const { return config_text_; }
  // A libpq conninfo for `user` (with PgCluster's known password for it, unless `extra` gives
  // another) on `db` through ringbouncer's TCP port.
  std::string ConnString(std::string_view user, std::string_view db = kTestDb,
                         std::string_view extra = "") const;
  // The same through ringbouncer's unix socket (SocketDir()/.s.PGSQL.PORT).
  std::string UnixConnString(std::string_view user, std::string_view db = kTestDb,
                             std::string_view extra = "") const;
  // pgbench's connection arguments: -h 127.0.0.1 -p PORT -U user (append the rest).
  std::vector<std::string> PgbenchArgs(std::string_view user = kMd5User.name) const;
  // PGPASSWORD=... for `user`, for RunPgbench's and psql's environment.
  std::vector<std::string> PasswordEnv(std::string_view user = kMd5User.name) const;

  // Everything the process has printed so far (stdout, then stderr).
  std::string LogText() const;
  // The last `bytes` of LogText(), for failure messages.
  std::string LogTail(size_t bytes = 6000) const;
  pid_t Pid() const { return process_->Pid(); }
  bool Running() { return process_->Running(); }
  // Sends `sig` to ringbouncer itself.
  void Signal(int sig) { process_->Kill(sig); }
  // The first ASan/UBSan/LSan report in the log (from its first line, up to 4000 bytes), or "".
  // Under RB_SANITIZE builds UBSan is told to halt on error, so a report also ends the process.
  std::string SanitizerReport() const;
  // VmRSS of the process in KiB, from /proc/PID/status; -1 if it can't be read.
  long RssKiB() const;
  // SIGQUIT (PgBouncer's "exit at once"), then SIGKILL if it hasn't exited within `grace`.
  // Returns the exit status as Subprocess::Wait does. Idempotent.
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

 private:
  TempDir dir_;
  int reserve_fd_ = -1;  // holds the port (bound, SO_REUSEPORT, not listening) while we run
  int port_ = 0;
  std::string config_path_;
  std::string config_text_;
  std::optional<Subprocess> process_;
  std::optional<int> exit_status_;
};

}  // namespace rb::test
