#include "engine/http_request.h"

#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace rb::engine {

namespace {

// RFC 9110 tchar: the characters of a method or a header name.
bool IsTokenChar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!IsTokenChar(c)) return false;
  return true;
}

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

HttpParseStatus ParseHttpRequest(std::string_view data, size_t max_head_bytes, HttpRequest* out) {
  // Split into lines up to the first empty one. A CR is allowed only right before the LF.
  std::vector<std::string_view> lines;
  size_t pos = 0;
  bool done = false;
  while (pos < data.size()) {
    size_t lf = data.find('\n', pos);
    if (lf == std::string_view::npos) break;
    size_t end = lf;
    if (end > pos && data[end - 1] == '\r') --end;
    std::string_view line = data.substr(pos, end - pos);
    pos = lf + 1;
    if (pos > max_head_bytes) return HttpParseStatus::kTooLarge;
    if (line.find('\r') != std::string_view::npos || line.find('\0') != std::string_view::npos) {
      return HttpParseStatus::kBad;
    }
    if (line.empty()) {
      // RFC 9112 2.2: empty lines before the request line are ignored.
      if (lines.empty()) continue;
      done = true;
      break;
    }
    lines.push_back(line);
  }
  if (!done) return pos >= max_head_bytes || data.size() >= max_head_bytes ? HttpParseStatus::kTooLarge
                                                                        : HttpParseStatus::kNeedMore;

  // Request line: method SP target SP HTTP-version, single spaces.
  std::vector<absl::string_view> parts = absl::StrSplit(AV(lines[0]), ' ');
  if (parts.size() != 3 || !IsToken(parts[0]) || parts[1].empty()) return HttpParseStatus::kBad;
  for (char c : parts[1]) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) return HttpParseStatus::kBad;
  }
  HttpRequest r;
  if (parts[2] == "HTTP/1.1") {
    r.minor_version = 1;
    r.keep_alive = true;
  } else if (parts[2] == "HTTP/1.0") {
    r.minor_version = 0;
    r.keep_alive = false;
  } else {
    return HttpParseStatus::kBad;
  }
  r.method = std::string(parts[0]);
  absl::string_view target = parts[1];
  if (target.front() != '/') return HttpParseStatus::kBad;  // origin-form only
  r.path = std::string(target.substr(0, target.find('?')));

  int hosts = 0;
  bool have_length = false;
  uint64_t length = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    // Obsolete line folding, and whitespace between a name and its colon, are errors (9112 5.1).
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !IsToken(AV(line.substr(0, colon)))) return HttpParseStatus::kBad;
    absl::string_view name = AV(line.substr(0, colon));
    absl::string_view value = absl::StripAsciiWhitespace(AV(line.substr(colon + 1)));
    if (absl::EqualsIgnoreCase(name, "host")) {
      ++hosts;
    } else if (absl::EqualsIgnoreCase(name, "content-length")) {
      uint64_t n = 0;
      if (value.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(value[0])) || !absl::SimpleAtoi(value, &n)) {
        return HttpParseStatus::kBad;
      }
      if (have_length && n != length) return HttpParseStatus::kBad;
      have_length = true;
      length = n;
    } else if (absl::EqualsIgnoreCase(name, "transfer-encoding")) {
      return HttpParseStatus::kBad;  // a body we would not read
    } else if (absl::EqualsIgnoreCase(name, "connection")) {
      for (absl::string_view option : absl::StrSplit(value, ',')) {
        option = absl::StripAsciiWhitespace(option);
        if (absl::EqualsIgnoreCase(option, "close")) r.keep_alive = false;
        if (absl::EqualsIgnoreCase(option, "keep-alive") && r.minor_version == 0) r.keep_alive = true;
      }
    }
  }
  if (length > 0) return HttpParseStatus::kBad;
  if (r.minor_version == 1 && hosts != 1) return HttpParseStatus::kBad;
  if (hosts > 1) return HttpParseStatus::kBad;
  r.head_bytes = pos;
  *out = std::move(r);
  return HttpParseStatus::kOk;
}

}  // namespace rb::engine
