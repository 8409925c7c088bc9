// PgCluster: a throwaway PostgreSQL for one test (or one test binary), started and stopped
// through tools/pgtmp, so that the tests, the demo and the benchmarks set PostgreSQL up the same
// way. See tools/pgtmp's header for the roles, passwords and pg_hba rules it creates.
//
//   rb::test::PgCluster pg;                                    // per test
//   rb::test::PgCluster& pg = rb::test::PgCluster::Shared();   // one per process, pgbench tables
//   REQUIRE(pg.Query("rb_md5", "SELECT 1").Scalar() == "1");
//   std::string userlist = pg.UserlistEntry("rb_scram");       // "rb_scram" "SCRAM-SHA-256$..."
//
// Nothing outlives the test process: the destructor stops the cluster and removes its directory,
// and pgtmp's --owner-pid watchdog does the same if the process dies first (abort, ctest timeout).
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>

#include "tests/support/pg_client.h"

namespace rb::test {

struct PgUser {
  std::string_view name;
  std::string_view password;    // empty for rb_trust
  std::string_view hba_method;  // what pg_hba.conf demands of it, over TCP and the unix socket
};
inline constexpr PgUser kMd5User{"rb_md5", "md5pass", "md5"};                // stored as md5
inline constexpr PgUser kScramUser{"rb_scram", "scrampass", "scram-sha-256"};  // stored as SCRAM
inline constexpr PgUser kTrustUser{"rb_trust", "", "trust"};                 // no password
inline constexpr std::string_view kSuperuser = "postgres";  // trusted on the unix socket only
inline constexpr std::string_view kTestDb = "rbtest";        // owned by rb_md5

enum class Transport { kTcp, kUnix };

struct PgClusterOptions {
  std::string hba = "md5";  // pg_hba method for every role not listed above: md5|scram|trust
  int max_connections = 300;
  bool pgbench = false;  // run `pgbench -i -s 1 rbtest` (about a second)
  int port = 0;          // 0: pgtmp picks a free one
};

class PgCluster {
 public:
  // Starts the cluster in a fresh /tmp/rb-pg-XXXXXX; throws with pgtmp's output on failure.
  explicit PgCluster(PgClusterOptions options = {});
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // One cluster for the whole process, with the pgbench tables, started on first use and
  // stopped at exit. ctest runs each test case in its own process, so under ctest this is one
  // cluster per test case; running the binary by hand shares it across test cases.
  static PgCluster& Shared();

  // Stops the cluster and removes its directory. Idempotent; the destructor calls it.
  void Stop();
  // Restarts PostgreSQL in place (pg_ctl restart -m MODE, as the postgres user when root): same
  // port, same data; sessions are cut. Returns once it accepts connections again; throws with
  // pg_ctl's output if it fails.
  void Restart(std::string_view mode = "fast");

  const std::string& Dir() const { return dir_; }        // also the unix socket directory
  const std::string& SocketDir() const { return dir_; }  // for host= and unix_socket_dir
  std::string TcpHost() const { return "127.0.0.1"; }
  int Port() const { return port_; }
  std::string SocketPath() const;  // Dir()/.s.PGSQL.<port>
  std::string LogPath() const;     // the server log; worth printing when a test fails
  std::string BinDir() const;      // where psql, pgbench and friends are
  // A KEY=VALUE line of pgtmp's output (PGHOST, PGPORT, PGTMP_BINDIR, ...); "" if absent.
  std::string Env(std::string_view key) const;
  // The postmaster's pid, from postmaster.pid; -1 when stopped.
  pid_t PostmasterPid() const;

  // The fixed password of a test role ("" for rb_trust, postgres and unknown roles).
  static std::string_view PasswordOf(std::string_view user);

  // A libpq conninfo string for `user` with its known password. `extra` is appended, and a key
  // in it overrides an earlier one (libpq's rule): ConnString("rb_md5", kTestDb, kTcp,
  // "password=wrong").
  std::string ConnString(std::string_view user, std::string_view dbname = kTestDb,
                         Transport transport = Transport::kTcp,
                         std::string_view extra = "") const;
  // postgres over the unix socket: the only way in as superuser.
  std::string SuperuserConnString(std::string_view dbname = "postgres") const;

  // Runs `sql` as `user` over TCP (connect, query, disconnect).
  QueryResult Query(std::string_view user, std::string_view sql,
                    std::string_view dbname = kTestDb) const;
  // Runs `sql` as postgres over the unix socket.
  QueryResult SuperuserQuery(std::string_view sql, std::string_view dbname = "postgres") const;

  // The role's stored secret (pg_authid.rolpassword): "md5<hex>", "SCRAM-SHA-256$...", or "" when
  // it has none. Throws for an unknown role.
  std::string StoredSecret(std::string_view role) const;
  // A userlist.txt (auth_file) line with the stored secret: "role" "secret".
  std::string UserlistEntry(std::string_view role) const;

 private:
  std::string dir_;
  int port_ = 0;
  std::map<std::string, std::string, std::less<>> env_;
  bool stopped_ = false;
};

// 'value' as an SQL string literal (quotes doubled).
std::string SqlLiteral(std::string_view value);

}  // namespace rb::test
