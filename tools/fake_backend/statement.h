// What the fake backend understands of SQL: just enough to tell a SELECT from the statements
// that change session state a pooler tracks (SET/RESET of reported parameters, transaction
// blocks, DISCARD ALL, DEALLOCATE). Everything else is answered as a SELECT.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"

namespace rb::fake_backend {

// PostgreSQL 15's GUC_REPORT parameters, in the order it sends them after AuthenticationOk.
// A client (or pooler) learns their values from ParameterStatus, and again whenever one changes.
struct ReportedParam {
  const char* name;
  const char* default_value;  // session_authorization's is the login user
  bool settable;              // SET of the others fails with 55P02, as in PostgreSQL
};
inline constexpr ReportedParam kReportedParams[] = {
    {"application_name", "", true},
    {"client_encoding", "UTF8", true},
    {"DateStyle", "ISO, MDY", true},
    {"default_transaction_read_only", "off", true},
    {"in_hot_standby", "off", false},
    {"integer_datetimes", "on", false},
    {"IntervalStyle", "postgres", true},
    {"is_superuser", "off", false},
    {"server_encoding", "UTF8", false},
    {"server_version", "15.0 (rb-fake-backend)", false},
    {"session_authorization", "", false},
    {"standard_conforming_strings", "on", true},
    {"TimeZone", "Etc/UTC", true},
};
inline constexpr int kParamCount = sizeof(kReportedParams) / sizeof(kReportedParams[0]);
inline constexpr int kSessionAuthorization = 10;

// Index into kReportedParams (names compare case-insensitively, as GUC names do), or -1.
int FindReportedParam(absl::string_view name);

enum class CommandKind : uint8_t {
  kSelect,         // anything we don't recognise: the canned result
  kEmpty,          // only blanks: EmptyQueryResponse
  kSet,            // SET [SESSION] name {TO|=} value; SET TIME ZONE value
  kSetLocal,       // SET LOCAL ...: lasts until the end of the transaction block
  kReset,          // RESET name; SET name TO DEFAULT
  kResetAll,       // RESET ALL
  kDiscardAll,     // RESET ALL, plus dropping prepared statements and portals
  kBegin,          // BEGIN, START TRANSACTION
  kCommit,         // COMMIT, END
  kRollback,       // ROLLBACK, ABORT
  kDeallocate,     // DEALLOCATE [PREPARE] name
  kDeallocateAll,  // DEALLOCATE [PREPARE] ALL
  kUtility,        // another SET/DISCARD form: only its command tag
};

struct Command {
  Command() = default;
  Command(CommandKind k, int p = -1, std::string v = {}, std::string t = {})
      : kind(k), param(p), value(std::move(v)), tag(std::move(t)) {}

  CommandKind kind = CommandKind::kSelect;
  int param = -1;     // kSet, kSetLocal, kReset: index into kReportedParams, -1 for other names
  std::string value;  // kSet, kSetLocal: the new value; kDeallocate: the statement name
  std::string tag;    // kUtility: the command tag
};

// Classifies one statement (no ';' outside quotes).
Command ClassifyStatement(absl::string_view sql);

// Calls fn(absl::string_view statement) for each ';'-separated statement of a simple Query,
// honouring quotes. Blank statements are passed too; the caller decides what they mean.
template <typename Fn>
void ForEachStatement(absl::string_view sql, Fn&& fn) {
  size_t start = 0;
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char ch = sql[i];
    if (quote != 0) {
      if (ch == quote) quote = 0;  // a doubled quote reopens at once: same result
    } else if (ch == '\'' || ch == '"') {
      quote = ch;
    } else if (ch == ';') {
      fn(sql.substr(start, i - start));
      start = i + 1;
    }
  }
  if (start < sql.size() || start == 0) fn(sql.substr(start));
}

// True if the statement is only whitespace.
bool IsBlank(absl::string_view sql);

// The number of parameters ($1 .. $n) a statement refers to: the highest n.
int CountParameters(absl::string_view sql);

}  // namespace rb::fake_backend
