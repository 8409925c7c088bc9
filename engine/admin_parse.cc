#include "engine/admin_parse.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace rb::engine {

namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsWordChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }

size_t SkipBlanks(absl::string_view s, size_t pos) {
  while (pos < s.size() && IsBlank(s[pos])) ++pos;
  return pos;
}

// Where a quoted string opened by `q` at `pos` may end (one past the closing quote). A doubled
// quote inside may be an escaped quote or the close followed by another quote; the regex allows
// both readings, and the caller keeps whichever lets the rest of the query match. Longest first.
std::vector<size_t> QuotedEnds(absl::string_view s, size_t pos, char q) {
  std::vector<size_t> ends;
  size_t p = pos + 1;
  while (p < s.size()) {
    if (s[p] != q) {
      ++p;
      continue;
    }
    ends.push_back(p + 1);
    if (p + 1 < s.size() && s[p + 1] == q) {
      p += 2;
      continue;
    }
    break;
  }
  return {ends.rbegin(), ends.rend()};
}

// The ends of a WORD starting at `pos`, longest first: a bare word can also end early (the
// regex backtracks, which matters for `SET keyto value`).
std::vector<size_t> WordEnds(absl::string_view s, size_t pos) {
  if (pos >= s.size()) return {};
  if (s[pos] == '"') return QuotedEnds(s, pos, '"');
  size_t end = pos;
  while (end < s.size() && IsWordChar(s[end])) ++end;
  std::vector<size_t> ends;
  for (size_t e = end; e > pos; --e) ends.push_back(e);
  return ends;
}

// WS0 (; WS0)? $
bool MatchTail(absl::string_view s, size_t pos) {
  pos = SkipBlanks(s, pos);
  if (pos < s.size() && s[pos] == ';') pos = SkipBlanks(s, pos + 1);
  return pos == s.size();
}

// PgBouncer's copy_arg: the raw text of a part, quotes removed when it starts with `q`.
std::string Unquote(absl::string_view raw, char q) {
  if (raw.empty() || raw[0] != q) return std::string(raw);
  std::string out;
  for (size_t i = 1; i + 1 < raw.size(); ++i) {
    if (raw[i] == q && raw[i + 1] == q) ++i;
    out.push_back(raw[i]);
  }
  return out;
}

bool MatchNormal(absl::string_view s, AdminCommand* out) {
  size_t start = SkipBlanks(s, 0);
  for (size_t e1 : WordEnds(s, start)) {
    absl::string_view cmd = s.substr(start, e1 - start);
    if (e1 < s.size() && IsBlank(s[e1])) {
      size_t a = SkipBlanks(s, e1);
      for (size_t e2 : WordEnds(s, a)) {
        if (!MatchTail(s, e2)) continue;
        absl::string_view arg = s.substr(a, e2 - a);
        if (cmd.size() >= kAdminCmdMax || arg.size() >= kAdminArgMax) {
          out->kind = AdminCommand::Kind::kBadArguments;
          return true;
        }
        out->kind = AdminCommand::Kind::kCommand;
        out->cmd = Unquote(cmd, '"');
        out->arg = Unquote(arg, '"');
        return true;
      }
    }
    if (MatchTail(s, e1)) {
      if (cmd.size() >= kAdminCmdMax) {
        out->kind = AdminCommand::Kind::kBadArguments;
        return true;
      }
      out->kind = AdminCommand::Kind::kCommand;
      out->cmd = Unquote(cmd, '"');
      return true;
    }
  }
  return false;
}

// SET WS1 KEY WS0 (=|to) WS0 VALUE tail, with VALUE a 'string' (quoted_value) or a WORD.
bool MatchSet(absl::string_view s, bool quoted_value, AdminCommand* out) {
  size_t p = SkipBlanks(s, 0);
  if (s.size() - p < 3 || !absl::EqualsIgnoreCase(s.substr(p, 3), "set")) return false;
  p += 3;
  if (p >= s.size() || !IsBlank(s[p])) return false;
  p = SkipBlanks(s, p);
  for (size_t ke : WordEnds(s, p)) {
    size_t q = SkipBlanks(s, ke);
    size_t v;
    if (q < s.size() && s[q] == '=') {
      v = q + 1;
    } else if (s.size() - q >= 2 && absl::EqualsIgnoreCase(s.substr(q, 2), "to")) {
      v = q + 2;
    } else {
      continue;
    }
    v = SkipBlanks(s, v);
    std::vector<size_t> value_ends;
    if (quoted_value) {
      if (v < s.size() && s[v] == '\'') value_ends = QuotedEnds(s, v, '\'');
    } else {
      value_ends = WordEnds(s, v);
    }
    for (size_t ve : value_ends) {
      if (!MatchTail(s, ve)) continue;
      absl::string_view key = s.substr(p, ke - p);
      absl::string_view value = s.substr(v, ve - v);
      std::string unquoted_key = Unquote(key, '"');
      if (key.size() >= kAdminArgMax || unquoted_key.empty() || value.size() >= kAdminValueMax) {
        out->kind = AdminCommand::Kind::kBadArguments;
        return true;
      }
      out->kind = AdminCommand::Kind::kSet;
      out->key = std::move(unquoted_key);
      out->value = Unquote(value, quoted_value ? '\'' : '"');
      return true;
    }
  }
  return false;
}

}  // namespace

AdminCommand ParseAdminCommand(absl::string_view query) {
  AdminCommand out;
  if (MatchNormal(query, &out)) return out;
  if (MatchSet(query, /*quoted_value=*/true, &out)) return out;
  if (MatchSet(query, /*quoted_value=*/false, &out)) return out;
  out.kind = AdminCommand::Kind::kSyntaxError;
  return out;
}

std::string TruncateAdminMessage(std::string message) {
  if (message.size() > 1023) message.resize(1023);
  return message;
}

}  // namespace rb::engine
