#include "engine/hba.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace rb::engine {
namespace {

bool IsBlank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

struct Token {
  enum class Kind { kIdent, kString, kComma };
  Kind kind;
  std::string text;
};

// Splits one line into tokens, following PgBouncer's hba tokenizer: blanks separate, ','
// is a token of its own, "..." is a quoted string with "" for a quote, '#' outside quotes ends
// the line. An identifier stops at a blank, ',', '#' or '"'.
absl::Status Tokenize(std::string_view line, std::vector<Token>* out) {
  out->clear();
  size_t i = 0;
  while (i < line.size()) {
    const char c = line[i];
    if (IsBlank(c)) {
      ++i;
    } else if (c == '#') {
      break;
    } else if (c == ',') {
      out->push_back(Token{Token::Kind::kComma, ","});
      ++i;
    } else if (c == '"') {
      std::string text;
      size_t j = i + 1;
      bool closed = false;
      for (; j < line.size(); ++j) {
        if (line[j] == '"') {
          if (j + 1 < line.size() && line[j + 1] == '"') {
            text.push_back('"');
            ++j;
            continue;
          }
          closed = true;
          break;
        }
        text.push_back(line[j]);
      }
      if (!closed) return absl::InvalidArgumentError("quoted name is not closed");
      out->push_back(Token{Token::Kind::kString, std::move(text)});
      i = j + 1;
    } else {
      size_t j = i;
      while (j < line.size() && !IsBlank(line[j]) && line[j] != ',' && line[j] != '#' &&
             line[j] != '"') {
        ++j;
      }
      out->push_back(Token{Token::Kind::kIdent, std::string(line.substr(i, j - i))});
      i = j;
    }
  }
  return absl::OkStatus();
}

std::string DirName(std::string_view path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return "";
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

class LineParser {
 public:
  explicit LineParser(std::string_view base_dir) : base_dir_(base_dir) {}

  // Parses one non-empty line into *rule. An error status carries the reason the line is skipped.
  absl::Status Parse(const std::vector<Token>& t, HbaRule* rule) {
    size_t i = 0;
    if (t[0].kind != Token::Kind::kIdent) {
      return absl::InvalidArgumentError("a line must start with local, host, hostssl or hostnossl");
    }
    const std::string& type = t[0].text;
    if (type == "local") {
      rule->type = HbaConnType::kLocal;
    } else if (type == "host") {
      rule->type = HbaConnType::kHost;
    } else if (type == "hostssl") {
      rule->type = HbaConnType::kHostSsl;
    } else if (type == "hostnossl") {
      rule->type = HbaConnType::kHostNoSsl;
    } else {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unknown connection type \"%s\" (expected local, host, hostssl or hostnossl)", type));
    }
    ++i;
    if (absl::Status s = ParseNames(t, &i, /*is_db=*/true, "database", &rule->databases, base_dir_, 0);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ParseNames(t, &i, /*is_db=*/false, "user", &rule->users, base_dir_, 0);
        !s.ok()) {
      return s;
    }
    if (rule->type != HbaConnType::kLocal) {
      if (absl::Status s = ParseAddress(t, &i, rule); !s.ok()) return s;
    }
    if (i >= t.size() || t[i].kind != Token::Kind::kIdent) {
      return absl::InvalidArgumentError("missing authentication method");
    }
    const std::string& method = t[i].text;
    if (method == "trust") {
      rule->method = HbaMethod::kTrust;
    } else if (method == "reject") {
      rule->method = HbaMethod::kReject;
    } else if (method == "md5") {
      rule->method = HbaMethod::kMd5;
    } else if (method == "password") {
      rule->method = HbaMethod::kPassword;
    } else if (method == "scram-sha-256") {
      rule->method = HbaMethod::kScramSha256;
    } else if (method == "peer") {
      rule->method = HbaMethod::kPeer;
    } else if (method == "cert") {
      rule->method = HbaMethod::kCert;
    } else if (method == "ldap") {
      rule->method = HbaMethod::kLdap;
    } else if (method == "pam") {
      return absl::InvalidArgumentError(
          "method \"pam\" is not allowed in the hba file (only as auth_type)");
    } else {
      return absl::InvalidArgumentError(absl::StrFormat("unknown authentication method \"%s\"", method));
    }
    ++i;
    return ParseOptions(t, i, rule);
  }

 private:
  absl::Status ParseNames(const std::vector<Token>& t, size_t* i, bool is_db, std::string_view what,
                          HbaNames* names, const std::string& dir, int depth) {
    while (true) {
      if (*i >= t.size() || t[*i].kind == Token::Kind::kComma) {
        return absl::InvalidArgumentError(absl::StrFormat("missing %s name", what));
      }
      const Token& tok = t[*i];
      if (tok.kind == Token::Kind::kIdent) {
        if (tok.text == "all") {
          names->all = true;
        } else if (is_db && tok.text == "sameuser") {
          names->sameuser = true;
        } else if (is_db && tok.text == "replication") {
          names->replication = true;
        } else if (is_db && (tok.text == "samerole" || tok.text == "samegroup")) {
          return absl::InvalidArgumentError(absl::StrFormat("\"%s\" is not supported", tok.text));
        } else if (tok.text[0] == '+') {
          return absl::InvalidArgumentError(
              absl::StrFormat("group names (\"%s\") are not supported", tok.text));
        } else if (tok.text[0] == '@') {
          if (absl::Status s = ReadNameFile(tok.text.substr(1), is_db, what, names, dir, depth);
              !s.ok()) {
            return s;
          }
        } else {
          names->names.push_back(tok.text);
        }
      } else {
        names->names.push_back(tok.text);  // quoted: always a plain name
      }
      ++*i;
      if (*i < t.size() && t[*i].kind == Token::Kind::kComma) {
        ++*i;
        continue;
      }
      return absl::OkStatus();
    }
  }

  // An @file holds more names, separated by commas, blanks or line breaks; '#' comments allowed.
  absl::Status ReadNameFile(std::string_view name, bool is_db, std::string_view what,
                            HbaNames* names, const std::string& dir, int depth) {
    if (depth >= 10) return absl::InvalidArgumentError("@file nesting is too deep");
    if (name.empty()) return absl::InvalidArgumentError("\"@\" needs a file name");
    const std::string path = ResolvePath(name, dir);
    absl::StatusOr<std::string> text = ReadTextFile(path);
    if (!text.ok()) return text.status();
    std::vector<Token> tokens;
    size_t pos = 0;
    while (pos < text->size()) {
      size_t eol = text->find('\n', pos);
      if (eol == std::string::npos) eol = text->size();
      std::string_view line = std::string_view(*text).substr(pos, eol - pos);
      pos = eol + 1;
      if (absl::Status s = Tokenize(line, &tokens); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrFormat("in \"%s\": %s", path, s.message()));
      }
      // Blank separation inside a name file means the same as a comma.
      std::vector<Token> names_only;
      for (Token& tok : tokens) {
        if (tok.kind != Token::Kind::kComma) names_only.push_back(std::move(tok));
      }
      for (size_t j = 0; j < names_only.size();) {
        std::vector<Token> one = {names_only[j]};
        size_t k = 0;
        if (absl::Status s = ParseNames(one, &k, is_db, what, names, DirName(path), depth + 1);
            !s.ok()) {
          return s;
        }
        ++j;
      }
    }
    return absl::OkStatus();
  }

  absl::Status ParseAddress(const std::vector<Token>& t, size_t* i, HbaRule* rule) {
    if (*i >= t.size() || t[*i].kind != Token::Kind::kIdent) {
      return absl::InvalidArgumentError("missing address");
    }
    std::string text = t[*i].text;
    ++*i;
    if (text == "all") {
      rule->any_address = true;
      return absl::OkStatus();
    }
    if (text == "samehost" || text == "samenet") {
      return absl::InvalidArgumentError(absl::StrFormat("address \"%s\" is not supported", text));
    }
    std::optional<std::string> bits;
    if (size_t slash = text.find('/'); slash != std::string::npos) {
      bits = text.substr(slash + 1);
      text.resize(slash);
    }
    std::optional<IpAddress> addr = IpAddress::Parse(text);
    if (!addr) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "invalid address \"%s\" (host names are not supported; use an IP address)", text));
    }
    IpAddress mask;
    mask.family = addr->family;
    const int max_bits = addr->family == AF_INET ? 32 : 128;
    if (bits) {
      int n = 0;
      if (bits->empty() || bits->size() > 3 ||
          !std::all_of(bits->begin(), bits->end(), [](char c) { return c >= '0' && c <= '9'; }) ||
          (n = std::stoi(*bits)) > max_bits) {
        return absl::InvalidArgumentError(absl::StrFormat("invalid mask length \"/%s\"", *bits));
      }
      for (int b = 0; b < n; ++b) mask.bytes[b / 8] |= static_cast<uint8_t>(0x80 >> (b % 8));
    } else {
      if (*i >= t.size() || t[*i].kind != Token::Kind::kIdent) {
        return absl::InvalidArgumentError("missing network mask (write ADDRESS/BITS or ADDRESS MASK)");
      }
      std::optional<IpAddress> m = IpAddress::Parse(t[*i].text);
      if (!m || m->family != addr->family) {
        return absl::InvalidArgumentError(absl::StrFormat("invalid network mask \"%s\"", t[*i].text));
      }
      mask = *m;
      ++*i;
    }
    // PgBouncer keeps such a rule and it can never match; PostgreSQL refuses the line. Skipping
    // it with a warning has PgBouncer's effect and tells the operator why.
    for (size_t b = 0; b < 16; ++b) {
      if (addr->bytes[b] & ~mask.bytes[b]) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "address %s has bits set outside the mask %s, so the rule could never match",
            addr->ToString(), mask.ToString()));
      }
    }
    rule->address = *addr;
    rule->mask = mask;
    return absl::OkStatus();
  }

  absl::Status ParseOptions(const std::vector<Token>& t, size_t i, HbaRule* rule) {
    while (i < t.size()) {
      if (t[i].kind != Token::Kind::kIdent) {
        return absl::InvalidArgumentError("unexpected text after the authentication method");
      }
      std::string text = t[i].text;
      ++i;
      const size_t eq = text.find('=');
      if (eq == std::string::npos || eq == 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("option \"%s\" is not of the form name=value", text));
      }
      std::string name = text.substr(0, eq);
      std::string value = text.substr(eq + 1);
      // ldapurl="ldap://..." tokenizes as `ldapurl=` followed by a quoted string.
      if (value.empty() && i < t.size() && t[i].kind == Token::Kind::kString) {
        value = t[i].text;
        ++i;
      }
      if (name == "map") {
        if (rule->method != HbaMethod::kCert && rule->method != HbaMethod::kPeer) {
          return absl::InvalidArgumentError("option \"map\" is only allowed with cert and peer");
        }
        rule->map = value;
      } else if (rule->method != HbaMethod::kLdap) {
        return absl::InvalidArgumentError(
            absl::StrFormat("unsupported option \"%s\" for method \"%s\"", name,
                            HbaMethodName(rule->method)));
      }
      rule->options.emplace_back(std::move(name), std::move(value));
    }
    return absl::OkStatus();
  }

  std::string base_dir_;
};

bool NameListMatches(const HbaNames& names, std::string_view name) {
  return std::find(names.names.begin(), names.names.end(), name) != names.names.end();
}

}  // namespace

std::string_view HbaMethodName(HbaMethod method) {
  switch (method) {
    case HbaMethod::kTrust: return "trust";
    case HbaMethod::kReject: return "reject";
    case HbaMethod::kMd5: return "md5";
    case HbaMethod::kPassword: return "password";
    case HbaMethod::kScramSha256: return "scram-sha-256";
    case HbaMethod::kPeer: return "peer";
    case HbaMethod::kCert: return "cert";
    case HbaMethod::kLdap: return "ldap";
  }
  return "unknown";
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN ||
      text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  const std::string s(text);
  IpAddress out;
  if (inet_pton(AF_INET, s.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET;
    return out;
  }
  if (inet_pton(AF_INET6, s.c_str(), out.bytes.data()) == 1) {
    out.family = AF_INET6;
    return out;
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::FromSockaddr(const struct sockaddr* addr) {
  if (addr == nullptr) return std::nullopt;
  IpAddress out;
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    out.family = AF_INET;
    std::memcpy(out.bytes.data(), &in->sin_addr, 4);
    return out;
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(&in6->sin6_addr, kMapped, 12) == 0) {
      out.family = AF_INET;
      std::memcpy(out.bytes.data(), reinterpret_cast<const uint8_t*>(&in6->sin6_addr) + 12, 4);
      return out;
    }
    out.family = AF_INET6;
    std::memcpy(out.bytes.data(), &in6->sin6_addr, 16);
    return out;
  }
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family != AF_INET && family != AF_INET6) return "?";
  inet_ntop(family, bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<HbaMatch> HbaRules::Lookup(const HbaQuery& query) const {
  std::optional<IpAddress> addr = query.address;
  // ::ffff:a.b.c.d from a dual-stack socket is an IPv4 client.
  if (addr && addr->family == AF_INET6) {
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(kMapped, kMapped + 12, addr->bytes.begin())) {
      IpAddress v4;
      v4.family = AF_INET;
      std::copy(addr->bytes.begin() + 12, addr->bytes.begin() + 16, v4.bytes.begin());
      addr = v4;
    }
  }
  for (const HbaRule& rule : rules) {
    if (query.is_unix) {
      if (rule.type != HbaConnType::kLocal) continue;
    } else {
      if (rule.type == HbaConnType::kLocal) continue;
      if (rule.type == HbaConnType::kHostSsl && !query.is_tls) continue;
      if (rule.type == HbaConnType::kHostNoSsl && query.is_tls) continue;
      if (!rule.any_address) {
        if (!addr || addr->family != rule.address.family) continue;
        bool match = true;
        for (size_t b = 0; b < 16; ++b) {
          if ((addr->bytes[b] & rule.mask.bytes[b]) != rule.address.bytes[b]) match = false;
        }
        if (!match) continue;
      }
    }
    if (query.replication) {
      if (!rule.databases.replication) continue;
    } else {
      const HbaNames& db = rule.databases;
      if (!(db.all || (db.sameuser && query.database == query.user) ||
            NameListMatches(db, query.database))) {
        continue;
      }
    }
    if (!(rule.users.all || NameListMatches(rule.users, query.user))) continue;
    return HbaMatch{rule.method, rule.map, rule.line};
  }
  return std::nullopt;
}

HbaResult ParseHba(std::string_view text, std::string_view file_name, std::string_view base_dir) {
  HbaResult result;
  result.rules.path = std::string(file_name);
  LineParser parser(base_dir);
  std::vector<Token> tokens;
  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    auto skip = [&](absl::string_view why) {
      result.warnings.push_back(Diagnostic{std::string(file_name), line_no,
                                           absl::StrCat(why, "; line ignored")});
    };
    if (line.find('\0') != std::string_view::npos) {
      skip("line contains a NUL byte");
      continue;
    }
    if (absl::Status s = Tokenize(line, &tokens); !s.ok()) {
      skip(s.message());
      continue;
    }
    if (tokens.empty()) continue;
    HbaRule rule;
    rule.file = std::string(file_name);
    rule.line = line_no;
    if (absl::Status s = parser.Parse(tokens, &rule); !s.ok()) {
      skip(s.message());
      continue;
    }
    // PgBouncer keeps a peer rule on a TCP line, and such clients then fail to log in; skipping
    // the line instead could let a later, weaker rule admit them.
    if (rule.method == HbaMethod::kPeer && rule.type != HbaConnType::kLocal) {
      result.warnings.push_back(Diagnostic{
          std::string(file_name), line_no,
          "method \"peer\" works only for local connections; TCP clients matching this line will "
          "be refused"});
    }
    if (rule.method == HbaMethod::kCert || rule.method == HbaMethod::kLdap) {
      result.warnings.push_back(Diagnostic{
          std::string(file_name), line_no,
          absl::StrFormat("method \"%s\" is not supported yet by ringbouncer; clients matching "
                          "this line will be refused",
                          HbaMethodName(rule.method))});
    }
    result.rules.rules.push_back(std::move(rule));
  }
  return result;
}

HbaResult LoadHbaFile(const std::string& path, const std::string& relative_to) {
  const std::string resolved = ResolvePath(path, relative_to);
  absl::StatusOr<std::string> text = ReadTextFile(resolved);
  if (!text.ok()) {
    HbaResult result;
    result.rules.path = path;
    result.errors.push_back(Diagnostic{path, 0, std::string(text.status().message())});
    return result;
  }
  return ParseHba(*text, path, DirName(resolved));
}

}  // namespace rb::engine
