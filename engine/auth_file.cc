#include "engine/auth_file.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"

namespace rb::engine {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads a double-quoted field starting at s[*pos] == '"'. "" inside stands for one quote.
// Returns false when the field is not closed on this line.
bool ReadField(std::string_view s, size_t* pos, std::string* out) {
  out->clear();
  for (size_t i = *pos + 1; i < s.size(); ++i) {
    if (s[i] == '"') {
      if (i + 1 < s.size() && s[i + 1] == '"') {
        out->push_back('"');
        ++i;
        continue;
      }
      *pos = i + 1;
      return true;
    }
    out->push_back(s[i]);
  }
  return false;
}

// "SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>", each part non-empty and the
// iteration count a number. Base64 validity is proto/scram.h's business.
bool HasScramShape(std::string_view s) {
  constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
  if (s.substr(0, kPrefix.size()) != kPrefix) return false;
  s.remove_prefix(kPrefix.size());
  const size_t dollar = s.find('$');
  if (dollar == std::string_view::npos) return false;
  std::string_view head = s.substr(0, dollar);   // iterations:salt
  std::string_view keys = s.substr(dollar + 1);  // storedkey:serverkey
  const size_t c1 = head.find(':');
  const size_t c2 = keys.find(':');
  if (c1 == std::string_view::npos || c2 == std::string_view::npos) return false;
  std::string_view iterations = head.substr(0, c1);
  if (iterations.empty()) return false;
  for (char c : iterations) {
    if (!IsDigit(c)) return false;
  }
  return c1 + 1 < head.size() && c2 > 0 && c2 + 1 < keys.size();
}

}  // namespace

std::string_view SecretKindName(SecretKind kind) {
  switch (kind) {
    case SecretKind::kNone: return "none";
    case SecretKind::kPlain: return "plain";
    case SecretKind::kMd5: return "md5";
    case SecretKind::kScramSha256: return "scram-sha-256";
  }
  return "unknown";
}

SecretKind ClassifySecret(std::string_view secret) {
  if (secret.empty()) return SecretKind::kNone;
  if (secret.size() == 35 && secret.substr(0, 3) == "md5") {
    bool hex = true;
    for (char c : secret.substr(3)) {
      if (!IsDigit(c) && !(c >= 'a' && c <= 'f')) hex = false;
    }
    if (hex) return SecretKind::kMd5;
  }
  if (HasScramShape(secret)) return SecretKind::kScramSha256;
  return SecretKind::kPlain;
}

const AuthUser* AuthFile::Find(std::string_view name) const {
  auto it = index.find(absl::string_view(name.data(), name.size()));
  return it == index.end() ? nullptr : &users[it->second];
}

AuthFileResult ParseAuthFile(std::string_view text, std::string_view file_name) {
  AuthFileResult result;
  result.auth_file.path = std::string(file_name);
  auto diag = [&](std::vector<Diagnostic>& list, int line, std::string message) {
    list.push_back(Diagnostic{std::string(file_name), line, std::move(message)});
  };

  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;

    size_t i = 0;
    while (i < line.size() && IsBlank(line[i])) ++i;
    if (i == line.size() || line[i] == ';' || line[i] == '#') continue;
    if (line.find('\0') != std::string_view::npos) {
      diag(result.errors, line_no, "line contains a NUL byte");
      continue;
    }

    AuthUser user;
    user.line = line_no;
    if (line[i] != '"') {
      diag(result.errors, line_no, "expected a double-quoted user name");
      continue;
    }
    if (!ReadField(line, &i, &user.name)) {
      diag(result.errors, line_no, "user name has no closing double quote");
      continue;
    }
    while (i < line.size() && IsBlank(line[i])) ++i;
    if (i == line.size() || line[i] != '"') {
      diag(result.errors, line_no,
           absl::StrFormat("expected a double-quoted password after user \"%s\"", user.name));
      continue;
    }
    if (!ReadField(line, &i, &user.secret)) {
      diag(result.errors, line_no,
           absl::StrFormat("password of user \"%s\" has no closing double quote", user.name));
      continue;
    }
    if (user.name.empty()) {
      diag(result.errors, line_no, "empty user name");
      continue;
    }
    user.kind = ClassifySecret(user.secret);
    if (user.kind == SecretKind::kPlain &&
        user.secret.substr(0, 14) == "SCRAM-SHA-256$") {
      diag(result.warnings, line_no,
           absl::StrFormat("the password of user \"%s\" starts like a SCRAM secret but is not one; "
                           "it is used as a plain-text password",
                           user.name));
    }

    auto [it, inserted] = result.auth_file.index.try_emplace(user.name, result.auth_file.users.size());
    if (inserted) {
      result.auth_file.users.push_back(std::move(user));
    } else {
      AuthUser& old = result.auth_file.users[it->second];
      diag(result.warnings, line_no,
           absl::StrFormat("user \"%s\" is listed again (first at line %d); this later entry is used",
                           user.name, old.line));
      old = std::move(user);
    }
  }
  return result;
}

AuthFileResult LoadAuthFile(const std::string& path, const std::string& relative_to) {
  absl::StatusOr<std::string> text = ReadTextFile(ResolvePath(path, relative_to));
  if (!text.ok()) {
    AuthFileResult result;
    result.auth_file.path = path;
    result.errors.push_back(Diagnostic{path, 0, std::string(text.status().message())});
    return result;
  }
  return ParseAuthFile(*text, path);
}

}  // namespace rb::engine
