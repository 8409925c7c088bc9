// A small libpq client for integration tests: connect (to PostgreSQL or to ringbouncer), run a
// query with a timeout, and see the SQLSTATE of any failure, connection failures included.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

struct pg_conn;

namespace rb::test {

using std::chrono::milliseconds;

struct QueryResult {
  bool ok = false;
  std::string sqlstate;  // of the error; empty when ok, or when the failure had none (timeout)
  std::string error;     // libpq's message
  std::string command_tag;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;  // NULL reads as ""

  // rows[0][0]; throws if the query failed or returned no rows (with the error in the message).
  const std::string& Scalar() const;
};

// The index of column `name` in `r`, or -1.
int ColumnIndex(const QueryResult& r, std::string_view name);
// The value of column `name` in the first row whose column `key_column` is `key`; "" if none
// (SHOW output: Cell(pools, "database", "rbtest", "cl_active")).
std::string Cell(const QueryResult& r, std::string_view key_column, std::string_view key, std::string_view name);

// One libpq connection. Connect never blocks longer than its timeout, and its failure keeps the
// server's SQLSTATE (libpq keeps it only in the message, and only in verbose mode).
class PgConn {
 public:
  static PgConn Connect(const std::string& conninfo,
                        milliseconds timeout = std::chrono::seconds(10));
  PgConn() = default;
  ~PgConn();
  PgConn(PgConn&& other) noexcept;
  PgConn& operator=(PgConn&& other) noexcept;
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  bool Ok() const;
  const std::string& Error() const { return error_; }
  const std::string& SqlState() const { return sqlstate_; }  // of a failed connect

  // Runs `sql` with the simple query protocol. With several statements, the result is the
  // first error, else the last statement's result. A timeout returns ok=false, error "timeout".
  QueryResult Exec(std::string_view sql, milliseconds timeout = std::chrono::seconds(30));

  // Exec in two halves, for a test that acts while a query runs: Send starts `sql` (simple
  // protocol) and returns at once (false, with Error(), if it could not be sent); Finish waits
  // for its result as Exec does.
  bool Send(std::string_view sql);
  QueryResult Finish(milliseconds timeout = std::chrono::seconds(30));

  // Sends a CancelRequest for this connection's current query (libpq's PQcancel, on a new
  // connection to the same address). True if it was sent; *error gets libpq's reason if not.
  bool Cancel(std::string* error = nullptr);
  // The BackendKeyData's process id (ringbouncer's own, not PostgreSQL's, through a pooler).
  int BackendPid() const;

  pg_conn* Raw() { return conn_; }

 private:
  pg_conn* conn_ = nullptr;
  std::string error_;
  std::string sqlstate_;
  std::string send_error_;  // why the last Send failed
  std::string send_sqlstate_;
};

// Connects, runs `sql`, disconnects. A failed connect is reported in the result (ok=false, with
// its SQLSTATE), so a test can check both kinds of failure the same way.
QueryResult Query(const std::string& conninfo, std::string_view sql,
                  milliseconds timeout = std::chrono::seconds(30));

// Finds "FATAL:  28P01: ..." (libpq's verbose message format) and returns "28P01", or "".
std::string SqlStateFromMessage(std::string_view message);

// Quotes a conninfo value: 'it''s' style escaping is libpq's, with backslashes.
std::string ConnInfoQuote(std::string_view value);

}  // namespace rb::test
