// The auth_file (userlist.txt): user names and their secrets, in PgBouncer's format.
//
//   "alice" "plain text password"
//   "bob"   "md5 + md5(password + username) as 32 lowercase hex digits"
//   "carol" "SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>"
//
// Each entry is one line with two double-quoted fields; "" inside a field stands for one double
// quote; anything after the second field is ignored (PgBouncer allows extra fields there). Blank
// lines and lines starting with ';' (PgBouncer) or '#' (ringbouncer also accepts it) are comments.
// A user listed twice keeps the later entry, as in PgBouncer, with a warning.
//
// The secret is stored as written and classified; it is not parsed further here. proto/scram.h
// owns the SCRAM secret parser, and the authentication code decides what each kind allows.
// Messages never contain secrets.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/ini.h"

namespace rb::engine {

enum class SecretKind {
  kNone,         // empty: the user exists but no password can match
  kPlain,        // plain text: usable for any password method, towards clients and servers
  kMd5,          // "md5" + 32 lowercase hex digits, PostgreSQL's md5 password hash
  kScramSha256,  // "SCRAM-SHA-256$..." (shape checked here, contents parsed by proto/scram.h)
};

std::string_view SecretKindName(SecretKind kind);  // "none", "plain", "md5", "scram-sha-256"

// Classifies a secret the way PostgreSQL's get_password_type does: md5 needs exactly 32 lowercase
// hex digits after "md5", SCRAM needs the full "SCRAM-SHA-256$iter:salt$stored:server" shape, and
// anything else is a plain-text password.
SecretKind ClassifySecret(std::string_view secret);

struct AuthUser {
  std::string name;
  std::string secret;
  SecretKind kind = SecretKind::kNone;
  int line = 0;  // where it was defined, for messages
};

// The parsed file: a plain copyable value, so it can live in a config snapshot.
struct AuthFile {
  std::string path;             // as configured (auth_file), for messages
  std::vector<AuthUser> users;  // in file order, one entry per name
  absl::flat_hash_map<std::string, size_t> index;  // name -> position in users

  const AuthUser* Find(std::string_view name) const;
};

struct AuthFileResult {
  AuthFile auth_file;
  std::vector<Diagnostic> warnings;
  std::vector<Diagnostic> errors;
  bool ok() const { return errors.empty(); }
};

// Parses auth file text. file_name is used in messages and stored as AuthFile::path.
AuthFileResult ParseAuthFile(std::string_view text, std::string_view file_name);

// Reads and parses the file at `path`. A file that cannot be read is an error at line 0.
// `relative_to`, when not empty, is the directory a relative path is resolved against (PgBouncer
// opens the path as given, that is, relative to its working directory).
AuthFileResult LoadAuthFile(const std::string& path, const std::string& relative_to = "");

}  // namespace rb::engine
