// PostgreSQL md5 password authentication, both sides, sans-IO.
//
// The stored form ("md5 secret") is "md5" + hex(md5(password + username)): the user name
// salts the hash, so the same password gives different secrets for different users.
// On the wire the server sends AuthenticationMD5Password with a 4-byte random salt and the
// client answers with a PasswordMessage holding
//     "md5" + hex(md5(hex(md5(password + username)) + salt))
// The inner hash is exactly the md5 secret without its "md5" prefix, so whoever holds only
// the md5 secret can answer the challenge: PgBouncer relies on that to log in to PostgreSQL
// with an auth_file that holds md5 secrets, and so do we. (It also means an md5 secret is
// password-equivalent; it must be protected like a password.)
//
// Passwords and user names are byte strings: md5 auth does no SASLprep or encoding work.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace rb::proto {

using Md5Salt = std::array<uint8_t, 4>;

// "md5" + 32 hex digits.
inline constexpr size_t kMd5SecretLength = 35;

// The same test PostgreSQL and PgBouncer apply to a stored password: "md5" followed by exactly
// 32 lowercase hex digits. Anything else is treated as a plain password (or a SCRAM secret).
[[nodiscard]] bool IsMd5Secret(absl::string_view stored);

// "md5" + hex(md5(password + user)).
[[nodiscard]] std::string Md5Secret(absl::string_view password, absl::string_view user);

// Client side: the PasswordMessage payload (without its NUL terminator) answering an
// AuthenticationMD5Password challenge. `stored` is what the auth_file or config holds for the
// user: an md5 secret (see IsMd5Secret) is used as is, anything else is taken as the plain
// password. A SCRAM secret can't answer an md5 challenge; callers check for it first.
[[nodiscard]] std::string Md5ClientResponse(absl::string_view stored, absl::string_view user,
                                            const Md5Salt& salt);

enum class [[nodiscard]] Md5VerifyResult : uint8_t {
  kOk,
  kWrongPassword,   // well-formed response that does not match (SQLSTATE 28P01)
  kBadResponse,     // not of the form "md5" + 32 hex digits; also answered with 28P01
  kUnusableSecret,  // the stored secret is a SCRAM secret: md5 can't be checked against it
};

[[nodiscard]] const char* Md5VerifyResultName(Md5VerifyResult result);

// Server side: checks a client's PasswordMessage payload (without its NUL terminator) against
// the stored secret, which is either a plain password or an md5 secret. The comparison runs
// in constant time.
Md5VerifyResult Md5VerifyResponse(absl::string_view stored, absl::string_view user,
                                  const Md5Salt& salt, absl::string_view response);

// Server side, plain-text "password" authentication (the client sent its password in clear):
// true if `password` is the one behind `stored` (a plain password or an md5 secret). Constant
// time in the compared bytes. Always false against a SCRAM secret (see VerifyScramPlainPassword).
[[nodiscard]] bool Md5VerifyPlainPassword(absl::string_view stored, absl::string_view user,
                                          absl::string_view password);

}  // namespace rb::proto
