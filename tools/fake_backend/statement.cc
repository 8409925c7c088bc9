#include "tools/fake_backend/statement.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace rb::fake_backend {
namespace {

bool IsWordChar(char ch) { return absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '$'; }

// A cursor over one statement: words (identifiers, keywords, a double-quoted identifier) and
// single characters.
class Lexer {
 public:
  explicit Lexer(absl::string_view text) : rest_(text) {}

  // The next word, or "" when the next token is not a word (or nothing is left).
  absl::string_view Word() {
    SkipBlanks();
    if (!rest_.empty() && rest_[0] == '"') {
      size_t end = rest_.find('"', 1);
      if (end == absl::string_view::npos) end = rest_.size() - 1;
      absl::string_view word = rest_.substr(1, end - 1);
      rest_.remove_prefix(end + 1);
      return word;
    }
    size_t n = 0;
    while (n < rest_.size() && IsWordChar(rest_[n])) ++n;
    absl::string_view word = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return word;
  }
  // Consumes the keyword if it comes next.
  bool Keyword(absl::string_view keyword) {
    Lexer probe = *this;
    if (!absl::EqualsIgnoreCase(probe.Word(), keyword)) return false;
    *this = probe;
    return true;
  }
  bool Char(char ch) {
    SkipBlanks();
    if (rest_.empty() || rest_[0] != ch) return false;
    rest_.remove_prefix(1);
    return true;
  }
  absl::string_view Rest() {
    SkipBlanks();
    return absl::StripTrailingAsciiWhitespace(rest_);
  }

 private:
  void SkipBlanks() { rest_ = absl::StripLeadingAsciiWhitespace(rest_); }
  absl::string_view rest_;
};

// A SET value as PostgreSQL would store it for our purposes: a quoted string loses its quotes
// (a doubled quote inside stands for one); anything else is kept as written.
std::string SetValue(absl::string_view text) {
  if (text.size() < 2 || text.front() != '\'' || text.back() != '\'') return std::string(text);
  std::string out;
  for (size_t i = 1; i + 1 < text.size(); ++i) {
    out += text[i];
    if (text[i] == '\'' && text[i + 1] == '\'') ++i;
  }
  return out;
}

Command ClassifySet(Lexer lex) {
  Command c;
  c.kind = lex.Keyword("local") ? CommandKind::kSetLocal : CommandKind::kSet;
  if (c.kind == CommandKind::kSet) (void)lex.Keyword("session");
  absl::string_view name;
  if (lex.Keyword("time")) {
    if (!lex.Keyword("zone")) return Command{CommandKind::kUtility, -1, "", "SET"};
    name = "TimeZone";
  } else {
    name = lex.Word();
    // SET TRANSACTION ..., SET SESSION AUTHORIZATION ..., SET ROLE ...: not a parameter.
    if (name.empty() || !(lex.Char('=') || lex.Keyword("to"))) return Command{CommandKind::kUtility, -1, "", "SET"};
  }
  c.param = FindReportedParam(name);
  absl::string_view value = lex.Rest();
  if (absl::EqualsIgnoreCase(value, "default")) {
    c.kind = CommandKind::kReset;
  } else {
    c.value = SetValue(value);
  }
  return c;
}

}  // namespace

int FindReportedParam(absl::string_view name) {
  for (int i = 0; i < kParamCount; ++i) {
    if (absl::EqualsIgnoreCase(name, kReportedParams[i].name)) return i;
  }
  return -1;
}

bool IsBlank(absl::string_view sql) { return absl::StripAsciiWhitespace(sql).empty(); }

Command ClassifyStatement(absl::string_view sql) {
  Lexer lex(sql);
  absl::string_view first = lex.Word();
  auto is = [&](absl::string_view keyword) { return absl::EqualsIgnoreCase(first, keyword); };
  if (first.empty()) return Command{IsBlank(sql) ? CommandKind::kEmpty : CommandKind::kSelect};
  if (is("begin") || is("start")) return Command{CommandKind::kBegin};
  if (is("commit") || is("end")) return Command{CommandKind::kCommit};
  if (is("rollback") || is("abort")) return Command{CommandKind::kRollback};
  if (is("set")) return ClassifySet(lex);
  if (is("reset")) {
    if (lex.Keyword("all")) return Command{CommandKind::kResetAll};
    return Command{CommandKind::kReset, FindReportedParam(lex.Word())};
  }
  if (is("discard")) {
    if (lex.Keyword("all")) return Command{CommandKind::kDiscardAll};
    return Command{CommandKind::kUtility, -1, "", absl::StrCat("DISCARD ", absl::AsciiStrToUpper(lex.Word()))};
  }
  if (is("deallocate")) {
    (void)lex.Keyword("prepare");
    if (lex.Keyword("all")) return Command{CommandKind::kDeallocateAll};
    return Command{CommandKind::kDeallocate, -1, std::string(lex.Word())};
  }
  return Command{CommandKind::kSelect};
}

int CountParameters(absl::string_view sql) {
  int highest = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    if (sql[i] != '$') continue;
    int n = 0;
    size_t j = i + 1;
    while (j < sql.size() && absl::ascii_isdigit(static_cast<unsigned char>(sql[j])) && n < 65536) n = n * 10 + (sql[j++] - '0');
    if (j > i + 1 && n > highest) highest = n;
  }
  return highest;
}

}  // namespace rb::fake_backend
