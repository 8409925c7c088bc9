#include "tests/support/pg_client.h"

#include <libpq-fe.h>
#include <poll.h>

#include <cctype>
#include <cerrno>
#include <stdexcept>
#include <utility>

namespace rb::test {
namespace {

using Clock = std::chrono::steady_clock;

// Waits until libpq's socket is readable (or writable). False on timeout.
bool WaitSocket(PGconn* conn, bool for_write, Clock::time_point deadline) {
  int fd = PQsocket(conn);
  if (fd < 0) return false;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd pfd{.fd = fd, .events = static_cast<short>(for_write ? POLLOUT : POLLIN), .revents = 0};
    int n = poll(&pfd, 1, static_cast<int>(left));
    if (n > 0) return true;  // readable, writable, or an error/hangup for libpq to report
    if (n < 0 && errno != EINTR) return false;
  }
}

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

}  // namespace

const std::string& QueryResult::Scalar() const {
  if (!ok) throw std::runtime_error("query failed: [" + sqlstate + "] " + error);
  if (rows.empty() || rows[0].empty()) throw std::runtime_error("query returned no rows");
  return rows[0][0];
}

int ColumnIndex(const QueryResult& r, std::string_view name) {
  for (size_t i = 0; i < r.columns.size(); ++i) {
    if (r.columns[i] == name) return static_cast<int>(i);
  }
  return -1;
}

std::string Cell(const QueryResult& r, std::string_view key_column, std::string_view key, std::string_view name) {
  const int k = ColumnIndex(r, key_column);
  const int c = ColumnIndex(r, name);
  if (k < 0 || c < 0) return "";
  for (const auto& row : r.rows) {
    if (row[static_cast<size_t>(k)] == key) return row[static_cast<size_t>(c)];
  }
  return "";
}

std::string SqlStateFromMessage(std::string_view message) {
  for (std::string_view severity : {"FATAL:  ", "ERROR:  ", "PANIC:  "}) {
    for (size_t at = message.find(severity); at != std::string_view::npos;
         at = message.find(severity, at + 1)) {
      std::string_view rest = message.substr(at + severity.size());
      if (rest.size() < 7 || rest[5] != ':') continue;
      bool code = true;
      for (char c : rest.substr(0, 5)) {
        code = code && (std::isdigit(static_cast<unsigned char>(c)) ||
                        std::isupper(static_cast<unsigned char>(c)));
      }
      if (code) return std::string(rest.substr(0, 5));
    }
  }
  return "";
}

std::string ConnInfoQuote(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

PgConn PgConn::Connect(const std::string& conninfo, milliseconds timeout) {
  PgConn result;
  const auto deadline = Clock::now() + timeout;
  result.conn_ = PQconnectStart(conninfo.c_str());
  if (result.conn_ == nullptr) {
    result.error_ = "PQconnectStart: out of memory";
    return result;
  }
  // Verbose messages carry the SQLSTATE ("FATAL:  28P01: ..."). It must be set before the
  // first poll: the server's ErrorResponse is formatted as it arrives.
  PQsetErrorVerbosity(result.conn_, PQERRORS_VERBOSE);
  PostgresPollingStatusType poll_status = PGRES_POLLING_WRITING;
  if (PQstatus(result.conn_) == CONNECTION_BAD) poll_status = PGRES_POLLING_FAILED;
  while (poll_status != PGRES_POLLING_OK && poll_status != PGRES_POLLING_FAILED) {
    if (!WaitSocket(result.conn_, poll_status == PGRES_POLLING_WRITING, deadline)) {
      result.error_ = "connect timed out after " + std::to_string(timeout.count()) + " ms";
      PQfinish(result.conn_);
      result.conn_ = nullptr;
      return result;
    }
    poll_status = PQconnectPoll(result.conn_);
  }
  if (poll_status == PGRES_POLLING_FAILED) {
    result.error_ = Trim(PQerrorMessage(result.conn_));
    result.sqlstate_ = SqlStateFromMessage(result.error_);
    PQfinish(result.conn_);
    result.conn_ = nullptr;
  }
  return result;
}

PgConn::~PgConn() {
  if (conn_ != nullptr) PQfinish(conn_);
}

PgConn::PgConn(PgConn&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)),
      error_(std::move(other.error_)),
      sqlstate_(std::move(other.sqlstate_)),
      send_error_(std::move(other.send_error_)),
      send_sqlstate_(std::move(other.send_sqlstate_)) {}

PgConn& PgConn::operator=(PgConn&& other) noexcept {
  if (this != &other) {
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = std::exchange(other.conn_, nullptr);
    error_ = std::move(other.error_);
    sqlstate_ = std::move(other.sqlstate_);
    send_error_ = std::move(other.send_error_);
    send_sqlstate_ = std::move(other.send_sqlstate_);
  }
  return *this;
}

bool PgConn::Ok() const { return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK; }

QueryResult PgConn::Exec(std::string_view sql, milliseconds timeout) {
  if (!Send(sql)) {
    QueryResult out;
    out.error = send_error_;
    out.sqlstate = send_sqlstate_;
    return out;
  }
  return Finish(timeout);
}

bool PgConn::Send(std::string_view sql) {
  send_error_.clear();
  send_sqlstate_.clear();
  if (!Ok()) {
    send_error_ = error_.empty() ? "not connected" : error_;
    send_sqlstate_ = sqlstate_;
    return false;
  }
  const std::string query(sql);
  if (PQsendQuery(conn_, query.c_str()) == 0) {
    send_error_ = Trim(PQerrorMessage(conn_));
    send_sqlstate_ = SqlStateFromMessage(send_error_);
    return false;
  }
  return true;
}

bool PgConn::Cancel(std::string* error) {
  if (conn_ == nullptr) {
    if (error != nullptr) *error = "not connected";
    return false;
  }
  PGcancel* cancel = PQgetCancel(conn_);
  if (cancel == nullptr) {
    if (error != nullptr) *error = "PQgetCancel failed";
    return false;
  }
  char errbuf[256] = {};
  bool sent = PQcancel(cancel, errbuf, sizeof errbuf) == 1;
  PQfreeCancel(cancel);
  if (!sent && error != nullptr) *error = errbuf;
  return sent;
}

int PgConn::BackendPid() const { return conn_ != nullptr ? PQbackendPID(conn_) : 0; }

QueryResult PgConn::Finish(milliseconds timeout) {
  QueryResult out;
  if (conn_ == nullptr) {
    out.error = "not connected";
    return out;
  }
  const auto deadline = Clock::now() + timeout;
  bool have_error = false;
  for (;;) {
    while (PQisBusy(conn_)) {
      if (!WaitSocket(conn_, false, deadline)) {
        out.ok = false;
        out.sqlstate.clear();
        out.error = "timeout";
        return out;
      }
      if (PQconsumeInput(conn_) == 0) {
        out.ok = false;
        out.error = Trim(PQerrorMessage(conn_));
        out.sqlstate = SqlStateFromMessage(out.error);
        return out;
      }
    }
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) break;
    ExecStatusType status = PQresultStatus(res);
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK || status == PGRES_EMPTY_QUERY) {
      if (!have_error) {
        out.ok = true;
        out.command_tag = PQcmdStatus(res);
        out.columns.clear();
        out.rows.clear();
        for (int c = 0; c < PQnfields(res); ++c) out.columns.emplace_back(PQfname(res, c));
        for (int r = 0; r < PQntuples(res); ++r) {
          std::vector<std::string>& row = out.rows.emplace_back();
          for (int c = 0; c < PQnfields(res); ++c) row.emplace_back(PQgetvalue(res, r, c));
        }
      }
    } else if (!have_error) {
      have_error = true;
      out.ok = false;
      out.columns.clear();
      out.rows.clear();
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      out.sqlstate = state != nullptr ? state : "";
      out.error = Trim(PQresultErrorMessage(res));
      if (out.error.empty()) out.error = PQresStatus(status);
    }
    PQclear(res);
    if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
      out.ok = false;
      out.error = "COPY is not supported by PgConn::Exec";
      break;
    }
  }
  return out;
}

QueryResult Query(const std::string& conninfo, std::string_view sql, milliseconds timeout) {
  PgConn conn = PgConn::Connect(conninfo, timeout);
  if (!conn.Ok()) {
    QueryResult out;
    out.error = conn.Error();
    out.sqlstate = conn.SqlState();
    return out;
  }
  return conn.Exec(sql, timeout);
}

}  // namespace rb::test
