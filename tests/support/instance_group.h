// InstanceGroup: several ringbouncer processes on one host, started the way the systemd units in
// containers/systemd describe (ringbouncer@.socket, ringbouncer@.service), with
// tools/socket_activate (rb-socket-activate) standing in for PID 1:
//  - every instance gets its own SO_REUSEPORT socket on one shared port (ListenStream=6432 with
//    ReusePort=true), its own admin port (ListenStream=%i) and its own unix socket
//    DIR/.s.PGSQL.<admin port> (ListenStream=/tmp/.s.PGSQL.%i), as passed fds 3, 4, 5;
//  - it runs as postgres (User=postgres) with DIR/instance.d/<admin port>.ini, which %includes
//    the shared DIR/pgbouncer.ini and sets peer_id, as containers/config/instance.d does;
//  - [peers] names every instance by its unix socket, so cancels are forwarded between them.
// Ports are free ones on 127.0.0.1 (tests must not take 6432 or 50001-50004 from anyone).
//
//   rb::test::PgCluster pg;
//   rb::test::InstanceGroup group(pg);                       // 4 instances, 2 workers each
//   PgConn c = PgConn::Connect(group.ConnString("rb_md5"));  // lands on any instance
//   int peer = InstanceGroup::PeerOfBackendPid(PQbackendPID(c.Raw()));   // 1..4: which one
//   QueryResult pools = Query(group.AdminConnString(peer - 1), "SHOW POOLS");
//
// The constructor returns once every instance has told its NOTIFY_SOCKET READY=1, and throws
// with the logs if one exits or stays silent. The destructor stops them all (SIGQUIT, then
// SIGKILL), so a failing test leaves nothing behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/pg_cluster.h"
#include "tests/support/process.h"

namespace rb::test {

inline constexpr std::string_view kAdminUser = "rb_admin";
inline constexpr std::string_view kAdminPassword = "adminpass";

struct InstanceGroupOptions {
  int instances = 4;
  int workers = 2;  // per instance
  // [pgbouncer] settings of the shared file, over the defaults (auth_type md5, transaction
  // pooling, default_pool_size 10, max_client_conn 2000, admin_users rb_admin).
  std::map<std::string, std::string> settings{};
  // Run the instances as postgres (User=postgres in the unit) when the test runs as root.
  bool as_postgres = true;
  std::chrono::milliseconds start_timeout = std::chrono::seconds(30);
};

class InstanceGroup {
 public:
  explicit InstanceGroup(const PgCluster& pg, InstanceGroupOptions options = {});
  ~InstanceGroup();
  InstanceGroup(const InstanceGroup&) = delete;
  InstanceGroup& operator=(const InstanceGroup&) = delete;

  int Size() const { return static_cast<int>(instances_.size()); }
  int SharedPort() const { return shared_port_; }
  // Instance i (0-based) has peer_id i+1, this admin port and DIR/.s.PGSQL.<admin port>.
  int AdminPort(int i) const { return instances_.at(i).admin_port; }
  const std::string& Dir() const { return dir_.Path(); }
  std::string UnixSocketPath(int i) const;
  std::string SharedConfigPath() const { return dir_.File("pgbouncer.ini"); }
  std::string InstanceConfigPath(int i) const;

  // libpq conninfo through the shared port (any instance), for `user` with its PgCluster
  // password unless `extra` says otherwise.
  std::string ConnString(std::string_view user, std::string_view db = kTestDb,
                         std::string_view extra = "") const;
  // Through instance i's own unix socket.
  std::string UnixConnString(int i, std::string_view user, std::string_view db = kTestDb,
                             std::string_view extra = "") const;
  // The admin console (database pgbouncer) of instance i, through its admin port.
  std::string AdminConnString(int i, std::string_view password = kAdminPassword) const;

  // A cancel key's first 4 bytes, as libpq's PQbackendPID returns them, name the instance
  // (peer_id, bytes 1-2) and the worker (byte 3) that own the session (proto/cancel_key.h).
  static int PeerOfBackendPid(int pid);
  static int WorkerOfBackendPid(int pid);

  // The launcher of instance i: signals sent to it reach ringbouncer (as systemctl kill does).
  pid_t LauncherPid(int i) const { return instances_.at(i).process->Pid(); }
  // ringbouncer itself (the launcher's child); -1 once it is gone.
  pid_t RingbouncerPid(int i) const;
  void Signal(int i, int sig);
  bool Running(int i);
  std::optional<int> Wait(int i, std::chrono::milliseconds timeout);
  // What instance i printed (ringbouncer's log on stderr, the launcher's complaints), and what
  // it told its NOTIFY_SOCKET (READY=1, STATUS=..., STOPPING=1).
  std::string Log(int i) const;
  std::string NotifyLog(int i) const;
  // Every instance's log tail, for failure messages.
  std::string Describe() const;

 private:
  struct Instance {
    int admin_port = 0;
    std::optional<Subprocess> process;
  };
  TempDir dir_;
  int shared_port_ = 0;
  std::vector<Instance> instances_;
};

}  // namespace rb::test
