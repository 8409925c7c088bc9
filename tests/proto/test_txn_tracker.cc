#include "proto/txn_tracker.h"

#include <string>

#include "proto/wire.h"
#include "tests/catch.h"

namespace rb::proto {
namespace {

void Client(TxnTracker& t, const std::string& types) {
  for (char c : types) t.OnClientMessage(static_cast<uint8_t>(c));
}

TEST_CASE("txn tracker starts idle") {
  TxnTracker t;
  CHECK(t.Idle());
  CHECK_FALSE(t.Busy());
  CHECK_FALSE(t.InTransaction());
  CHECK(t.status() == kTxnIdle);
  CHECK(t.outstanding() == 0);
}

TEST_CASE("txn tracker releases after a simple query's ReadyForQuery I") {
  TxnTracker t;
  Client(t, "Q");
  CHECK_FALSE(t.Idle());
  CHECK(t.Busy());
  CHECK(t.outstanding() == 1);
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
}

TEST_CASE("txn tracker holds the server through BEGIN ... COMMIT") {
  TxnTracker t;
  Client(t, "Q");  // BEGIN
  t.OnReadyForQuery('T');
  CHECK_FALSE(t.Idle());
  CHECK_FALSE(t.Busy());
  CHECK(t.InTransaction());
  Client(t, "Q");  // UPDATE
  t.OnReadyForQuery('T');
  CHECK_FALSE(t.Idle());
  Client(t, "Q");  // COMMIT
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
  CHECK_FALSE(t.InTransaction());
}

TEST_CASE("txn tracker holds the server in a failed transaction until ROLLBACK") {
  TxnTracker t;
  Client(t, "Q");
  t.OnReadyForQuery('T');
  Client(t, "Q");  // fails
  t.OnReadyForQuery('E');
  CHECK(t.InTransaction());
  CHECK_FALSE(t.Idle());
  CHECK(t.status() == kTxnFailed);
  Client(t, "Q");  // ROLLBACK
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
}

TEST_CASE("txn tracker waits for both ReadyForQuery of a pipelined extended batch") {
  TxnTracker t;
  Client(t, "PBESPBES");
  CHECK(t.outstanding() == 2);
  t.OnReadyForQuery('I');
  // The first batch is done and the server says idle, but the second batch is still running.
  CHECK_FALSE(t.Idle());
  CHECK(t.Busy());
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
}

TEST_CASE("txn tracker is not idle after Parse/Bind without Sync") {
  TxnTracker t;
  Client(t, "PB");
  CHECK_FALSE(t.Idle());
  CHECK(t.Busy());
  CHECK(t.outstanding() == 0);
  Client(t, "DE");
  CHECK_FALSE(t.Idle());
  Client(t, "S");
  CHECK_FALSE(t.Idle());
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
}

TEST_CASE("txn tracker keeps a Flushed batch open until its Sync") {
  TxnTracker t;
  Client(t, "PDH");  // Parse, Describe, Flush: results come back, nothing is finished
  CHECK_FALSE(t.Idle());
  CHECK(t.Busy());
  Client(t, "BEH");
  CHECK_FALSE(t.Idle());
  Client(t, "S");
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
}

TEST_CASE("txn tracker does not pin the server for a Flush with nothing pending") {
  // A Flush asks the server to send what it has; with no Parse/Bind/... before it the server
  // holds nothing, so there is no batch to wait for.
  TxnTracker t;
  Client(t, "H");
  CHECK(t.Idle());
  Client(t, "Q");
  Client(t, "H");
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
}

TEST_CASE("txn tracker counts a query sent before the previous ReadyForQuery arrived") {
  TxnTracker t;
  Client(t, "QQ");
  t.OnReadyForQuery('I');
  CHECK_FALSE(t.Idle());
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
}

TEST_CASE("txn tracker treats FunctionCall like a query") {
  TxnTracker t;
  Client(t, "F");
  CHECK(t.outstanding() == 1);
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
}

TEST_CASE("txn tracker ignores COPY data, which belongs to a request already counted") {
  TxnTracker t;
  Client(t, "Q");  // COPY t FROM STDIN
  Client(t, "dddc");
  CHECK(t.outstanding() == 1);
  CHECK_FALSE(t.Idle());
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
  Client(t, "Q");
  Client(t, "df");  // CopyFail: the server answers ErrorResponse + ReadyForQuery
  t.OnReadyForQuery('I');
  CHECK(t.Idle());
}

TEST_CASE("txn tracker ignores an unsolicited ReadyForQuery") {
  TxnTracker t;
  t.OnReadyForQuery('I');  // the end of login
  CHECK(t.outstanding() == 0);
  CHECK(t.Idle());
}

TEST_CASE("txn tracker Reset forgets everything") {
  TxnTracker t;
  Client(t, "PBQ");
  t.OnReadyForQuery('T');
  t.Reset();
  CHECK(t.Idle());
  CHECK(t.outstanding() == 0);
}

}  // namespace
}  // namespace rb::proto
