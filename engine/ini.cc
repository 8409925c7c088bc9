#include "engine/ini.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rb::engine {
namespace {

// ASCII-only character classes: the C library's are locale-dependent and undefined for the
// negative chars that UTF-8 bytes become.
bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
bool IsSpace(char c) { return IsBlank(c) || c == '\n'; }
bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
// libusual's key characters. '*' is the fallback database, '.' and '-' appear in database names.
bool IsKeyChar(char c) { return IsAlnum(c) || c == '_' || c == '.' || c == '-' || c == '*'; }

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && IsBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBlank(s.back())) s.remove_suffix(1);
  return s;
}

// Parses the rest of a line after an opening quote character `q`. With `doubled`, two quotes in a
// row stand for one. Sets *out and returns the number of characters consumed including the
// closing quote, or 0 when the quote is never closed.
size_t ReadQuoted(std::string_view s, char q, bool doubled, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == q) {
      if (doubled && i + 1 < s.size() && s[i + 1] == q) {
        out->push_back(q);
        ++i;
        continue;
      }
      return i + 1;
    }
    out->push_back(s[i]);
  }
  return 0;
}

}  // namespace

std::string Diagnostic::ToString() const {
  if (line > 0) return absl::StrFormat("%s:%d: %s", file, line, message);
  return absl::StrFormat("%s: %s", file, message);
}

IniParseResult ParseIni(std::string_view text, std::string_view file_name) {
  IniParseResult result;
  auto error = [&](int line, std::string message) {
    result.errors.push_back(Diagnostic{std::string(file_name), line, std::move(message)});
  };

  // A UTF-8 byte order mark, as some editors write, is not part of the first line.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);

  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;

    // libusual reads the file as a C string and would stop at a NUL; we refuse the line instead
    // of silently losing the rest of the file.
    if (line.find('\0') != std::string_view::npos) {
      error(line_no, "line contains a NUL byte");
      continue;
    }

    line = TrimBlanks(line);
    if (line.empty()) continue;

    // "%include" must be followed by a blank, as in libusual; "%includefoo" is a syntax error.
    constexpr std::string_view kInclude = "%include";
    if (line.substr(0, kInclude.size()) == kInclude &&
        (line.size() == kInclude.size() || IsBlank(line[kInclude.size()]))) {
      std::string_view path = TrimBlanks(line.substr(kInclude.size()));
      if (path.empty()) {
        error(line_no, "%include needs a file name");
        continue;
      }
      result.items.push_back(IniItem{IniItem::Kind::kInclude, "", std::string(path), false, line_no});
      continue;
    }

    if (line[0] == ';' || line[0] == '#') continue;

    if (line[0] == '[') {
      size_t close = line.find(']');
      if (close == std::string_view::npos) {
        error(line_no, "syntax error: section header has no closing \"]\"");
        continue;
      }
      std::string_view rest = TrimBlanks(line.substr(close + 1));
      if (!rest.empty() && rest[0] != ';' && rest[0] != '#') {
        error(line_no, absl::StrFormat("syntax error: unexpected text \"%s\" after section header",
                                       std::string(rest)));
        continue;
      }
      result.items.push_back(IniItem{IniItem::Kind::kSection, std::string(line.substr(1, close - 1)),
                                     "", false, line_no});
      continue;
    }

    IniItem item;
    item.kind = IniItem::Kind::kKeyValue;
    item.line = line_no;
    size_t i = 0;
    if (line[0] == '"' || line[0] == '\'') {
      const char q = line[0];
      size_t used = ReadQuoted(line.substr(1), q, /*doubled=*/q == '"', &item.key);
      if (used == 0) {
        error(line_no, absl::StrFormat("syntax error: name quoted with %c is not closed", q));
        continue;
      }
      if (item.key.empty()) {
        error(line_no, "syntax error: empty quoted name");
        continue;
      }
      item.key_quoted = true;
      i = 1 + used;
    } else {
      while (i < line.size() && IsKeyChar(line[i])) ++i;
      item.key = std::string(line.substr(0, i));
    }
    size_t eq = i;
    while (eq < line.size() && IsBlank(line[eq])) ++eq;
    if (item.key.empty() || eq >= line.size() || line[eq] != '=') {
      // The usual cause: a database or user name with characters outside [A-Za-z0-9_.*-].
      error(line_no,
            "syntax error: expected \"name = value\" (quote names with other characters: \"my db\" = ...)");
      continue;
    }
    item.value = std::string(TrimBlanks(line.substr(eq + 1)));
    result.items.push_back(std::move(item));
  }
  return result;
}

absl::StatusOr<std::vector<ConnParam>> ParseConnString(std::string_view text) {
  std::vector<ConnParam> params;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < text.size() && IsSpace(text[i])) ++i;
  };
  while (true) {
    skip_space();
    if (i >= text.size()) break;
    size_t key_start = i;
    while (i < text.size() && text[i] != '=' && !IsSpace(text[i])) ++i;
    std::string key(text.substr(key_start, i - key_start));
    skip_space();
    if (key.empty() || i >= text.size() || text[i] != '=') {
      std::string_view near = text.substr(key_start, std::min<size_t>(20, text.size() - key_start));
      return absl::InvalidArgumentError(
          absl::StrFormat("expected key=value at \"%s\"", std::string(near)));
    }
    ++i;  // '='
    skip_space();
    std::string value;
    if (i < text.size() && text[i] == '\'') {
      size_t used = ReadQuoted(text.substr(i + 1), '\'', /*doubled=*/true, &value);
      if (used == 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("quoted value of \"%s\" is not closed", key));
      }
      i += 1 + used;
      if (i < text.size() && !IsSpace(text[i])) {
        return absl::InvalidArgumentError(
            absl::StrFormat("unexpected character after the quoted value of \"%s\"", key));
      }
    } else {
      size_t value_start = i;
      while (i < text.size() && !IsSpace(text[i])) ++i;
      value = std::string(text.substr(value_start, i - value_start));
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("empty value for \"%s\"", key));
    }
    params.emplace_back(std::move(key), std::move(value));
  }
  return params;
}

std::string QuoteConnValue(std::string_view value) {
  bool needs_quotes = value.empty();
  for (char c : value) {
    if (IsSpace(c) || c == '\'') needs_quotes = true;
  }
  if (!needs_quotes) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  auto fail = [&](int err) {
    return absl::NotFoundError(
        absl::StrFormat("could not read \"%s\": %s", path, std::strerror(err)));
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return fail(err);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return fail(EISDIR);
  }
  std::string contents;
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return fail(err);
    }
    if (n == 0) break;
    contents.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return contents;
}

std::string ResolvePath(std::string_view path, std::string_view relative_to) {
  if (relative_to.empty() || (!path.empty() && path.front() == '/')) return std::string(path);
  std::string out(relative_to);
  if (out.back() != '/') out.push_back('/');
  out.append(path);
  return out;
}

}  // namespace rb::engine
