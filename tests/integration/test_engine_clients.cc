// Real clients through ringbouncer: psql, and pgbench with -c 100 in both protocols and in
// transaction and session pooling (4 workers), against a real PostgreSQL.
#include <string>
#include <vector>

#include "tests/catch.h"
#include "tests/support/paths.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/pgbench.h"
#include "tests/support/process.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;

// pgbench's built-in TPC-B-like script (BEGIN, three UPDATEs, a SELECT, an INSERT, END) for a
// few seconds: transactions that pooling must not split or mix.
void RunPgbench100(RingbouncerProcess& rb, const std::string& protocol) {
  std::vector<std::string> args = rb.PgbenchArgs();
  for (const char* a : {"-n", "-c", "100", "-j", "2", "-T", "3", "-M"}) args.emplace_back(a);
  args.push_back(protocol);
  args.emplace_back(kTestDb);
  PgbenchResult result = RunPgbench(args, rb.PasswordEnv(), 120s);
  INFO("pgbench -M " << protocol << ":\n" << result.output);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(result.exit_code == 0);
  CHECK(result.parsed);
  CHECK(result.failed == 0);
  CHECK(result.transactions > 0);
  CHECK(rb.Running());
}

TEST_CASE("psql runs queries through ringbouncer in transaction and session modes",
          "[integration][engine]") {
  PgCluster& pg = PgCluster::Shared();
  for (const char* mode : {"transaction", "session"}) {
    RingbouncerProcess rb(pg, {.settings = {{"pool_mode", mode}}});
    std::vector<std::string> argv = {pg.BinDir() + "/psql", "-X", "-A", "-t", "-h", rb.Host(),
                                     "-p", std::to_string(rb.Port()), "-U", "rb_md5", "-d",
                                     std::string(kTestDb), "-c",
                                     "select current_user, current_database(), 40 + 2"};
    CommandResult result = RunCommand(argv, 60s, rb.PasswordEnv());
    INFO("mode " << mode << ": psql said: " << result.out << result.err);
    INFO("ringbouncer log:\n" << rb.LogTail());
    CHECK(result.exit_code == 0);
    CHECK(result.out == "rb_md5|rbtest|42\n");

    // Several statements in one -c string go as one simple Query message.
    argv.back() = "create temp table t(v int); insert into t values (1), (2); select sum(v) from t";
    if (std::string(mode) == "transaction") {
      // In transaction mode a temp table lives only as long as its transaction.
      argv.back() = "begin; create temp table t(v int) on commit drop; insert into t values (1), "
                    "(2); select sum(v) from t; commit";
    }
    result = RunCommand(argv, 60s, rb.PasswordEnv());
    INFO("psql said: " << result.out << result.err);
    CHECK(result.exit_code == 0);
    CHECK(result.out.find("3\n") != std::string::npos);
  }
}

TEST_CASE("pgbench -c 100 in simple and extended protocol through transaction mode has no "
          "failed transactions",
          "[integration][engine]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, {.settings = {{"pool_mode", "transaction"},
                                          {"default_pool_size", "20"}}});
  for (const char* protocol : {"simple", "extended"}) RunPgbench100(rb, protocol);
}

TEST_CASE("pgbench -c 100 in simple and extended protocol through session mode has no failed "
          "transactions",
          "[integration][engine]") {
  PgCluster& pg = PgCluster::Shared();
  // Session mode holds a server per client for the whole session: the pool must fit all 100.
  RingbouncerProcess rb(pg, {.settings = {{"pool_mode", "session"},
                                          {"default_pool_size", "110"}}});
  for (const char* protocol : {"simple", "extended"}) RunPgbench100(rb, protocol);
}

// Statement mode: BEGIN itself must fail, as under PgBouncer (the ReadyForQuery 'T' that would
// tell libpq the BEGIN succeeded is withheld, so the client sees only the FATAL).
TEST_CASE("statement mode serves single statements and refuses a transaction block",
          "[integration][engine]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, {.settings = {{"pool_mode", "statement"},
                                          {"default_pool_size", "5"}}});
  std::vector<std::string> args = rb.PgbenchArgs();
  for (const char* a : {"-n", "-S", "-M", "extended", "-c", "20", "-j", "2", "-T", "2"}) {
    args.emplace_back(a);
  }
  args.emplace_back(kTestDb);
  PgbenchResult result = RunPgbench(args, rb.PasswordEnv(), 120s);
  INFO("pgbench:\n" << result.output);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(result.exit_code == 0);
  CHECK(result.failed == 0);
  CHECK(result.transactions > 0);

  PgConn conn = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(conn.Ok());
  CHECK(conn.Exec("SELECT 1").Scalar() == "1");
  // PgBouncer answers the ReadyForQuery 'T' that opens the block with its FATAL instead, so
  // BEGIN itself fails with the message (Debian's pgbouncer 1.18 does: psql -c BEGIN prints
  // only the FATAL). Nothing may run inside the block either way.
  QueryResult begin = conn.Exec("BEGIN");
  INFO("BEGIN: ok=" << begin.ok << " [" << begin.sqlstate << "] " << begin.error);
  QueryResult inside = conn.Exec("SELECT 'inside'");
  INFO("next: ok=" << inside.ok << " [" << inside.sqlstate << "] " << inside.error);
  CHECK_FALSE(inside.ok);
  CHECK_FALSE(begin.ok);
  CHECK(begin.error.find("transaction blocks not allowed in statement pooling mode") !=
        std::string::npos);
  // The refused client's server was dropped, not left in a transaction for the next one.
  PgConn next = PgConn::Connect(rb.ConnString("rb_md5"));
  REQUIRE(next.Ok());
  CHECK(next.Exec("SELECT now() = statement_timestamp()").Scalar() == "t");
}

TEST_CASE("pipelined extended-protocol clients (pgbench pipelines) through transaction "
          "mode have no failed transactions",
          "[integration][engine]") {
  PgCluster& pg = PgCluster::Shared();
  RingbouncerProcess rb(pg, {.settings = {{"pool_mode", "transaction"},
                                          {"default_pool_size", "5"}}});
  // Parse/Bind/Execute for every statement, one Sync at the end: the server may be released
  // only at the ReadyForQuery that answers that Sync, never between the statements.
  TempDir dir("rb-pipeline");
  std::string script = dir.WriteFile("pipeline.sql",
                                     "\\set aid random(1, 100000)\n"
                                     "\\set delta random(-5000, 5000)\n"
                                     "\\startpipeline\n"
                                     "BEGIN;\n"
                                     "UPDATE pgbench_accounts SET abalance = abalance + :delta "
                                     "WHERE aid = :aid;\n"
                                     "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
                                     "END;\n"
                                     "SELECT 1;\n"
                                     "\\endpipeline\n");
  std::vector<std::string> args = rb.PgbenchArgs();
  for (const char* a : {"-n", "-M", "extended", "-c", "30", "-j", "2", "-T", "3", "-f"}) {
    args.emplace_back(a);
  }
  args.push_back(script);
  args.emplace_back(kTestDb);
  PgbenchResult result = RunPgbench(args, rb.PasswordEnv(), 120s);
  INFO("pgbench:\n" << result.output);
  INFO("ringbouncer log:\n" << rb.LogTail());
  CHECK(result.exit_code == 0);
  CHECK(result.parsed);
  CHECK(result.failed == 0);
  CHECK(result.transactions > 0);
}

}  // namespace
}  // namespace rb::test
