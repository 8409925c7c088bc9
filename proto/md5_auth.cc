#include "proto/md5_auth.h"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/md5.h>
// clang-format on

#include "absl/strings/match.h"
#include "proto/auth_util.h"

namespace rb::proto {
namespace {

constexpr absl::string_view kMd5Prefix = "md5";
constexpr size_t kMd5HexLength = 32;

// md5(a + b), as 32 lowercase hex digits.
std::string Md5Hex(absl::string_view a, absl::Span<const uint8_t> b) {
  wc_Md5 md5;
  std::array<uint8_t, WC_MD5_DIGEST_SIZE> digest{};
  // wolfCrypt's MD5 cannot fail for in-memory input once initialised; a failure here would be
  // a broken library, and yields a digest that never matches anything a client sends.
  if (wc_InitMd5(&md5) != 0) return std::string(kMd5HexLength, 'x');
  int rc = wc_Md5Update(&md5, reinterpret_cast<const byte*>(a.data()),
                        static_cast<word32>(a.size()));
  if (rc == 0 && !b.empty()) rc = wc_Md5Update(&md5, b.data(), static_cast<word32>(b.size()));
  if (rc == 0) rc = wc_Md5Final(&md5, digest.data());
  wc_Md5Free(&md5);
  if (rc != 0) return std::string(kMd5HexLength, 'x');
  return HexLower(digest);
}

absl::Span<const uint8_t> Bytes(absl::string_view s) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// hex(md5(password + user)): the md5 secret without its prefix.
std::string InnerHash(absl::string_view stored, absl::string_view user) {
  if (IsMd5Secret(stored)) return std::string(stored.substr(kMd5Prefix.size()));
  return Md5Hex(stored, Bytes(user));
}

std::string ResponseFromInner(absl::string_view inner_hex, const Md5Salt& salt) {
  return std::string(kMd5Prefix) + Md5Hex(inner_hex, salt);
}

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

}  // namespace

bool IsMd5Secret(absl::string_view stored) {
  if (stored.size() != kMd5SecretLength || !absl::StartsWith(stored, kMd5Prefix)) return false;
  for (char c : stored.substr(kMd5Prefix.size())) {
    if (!IsLowerHex(c)) return false;
  }
  return true;
}

std::string Md5Secret(absl::string_view password, absl::string_view user) {
  return std::string(kMd5Prefix) + Md5Hex(password, Bytes(user));
}

std::string Md5ClientResponse(absl::string_view stored, absl::string_view user,
                              const Md5Salt& salt) {
  return ResponseFromInner(InnerHash(stored, user), salt);
}

const char* Md5VerifyResultName(Md5VerifyResult result) {
  switch (result) {
    case Md5VerifyResult::kOk:
      return "ok";
    case Md5VerifyResult::kWrongPassword:
      return "wrong password";
    case Md5VerifyResult::kBadResponse:
      return "malformed md5 response";
    case Md5VerifyResult::kUnusableSecret:
      return "stored secret is not usable for md5 authentication";
  }
  return "unknown";
}

Md5VerifyResult Md5VerifyResponse(absl::string_view stored, absl::string_view user,
                                  const Md5Salt& salt, absl::string_view response) {
  // PostgreSQL stores SCRAM secrets in the same column; md5 can't be checked against one
  // (the md5 inner hash is not derivable from SCRAM keys).
  if (absl::StartsWith(stored, "SCRAM-SHA-256$")) return Md5VerifyResult::kUnusableSecret;
  // A client answer has a fixed shape. Checking it first costs nothing secret: the shape is
  // public, and only the 32 hex digits are compared in constant time below.
  if (!IsMd5Secret(response)) return Md5VerifyResult::kBadResponse;
  const std::string expected = ResponseFromInner(InnerHash(stored, user), salt);
  return ConstantTimeEquals(expected, response) ? Md5VerifyResult::kOk
                                                : Md5VerifyResult::kWrongPassword;
}

bool Md5VerifyPlainPassword(absl::string_view stored, absl::string_view user,
                            absl::string_view password) {
  if (absl::StartsWith(stored, "SCRAM-SHA-256$")) return false;
  if (IsMd5Secret(stored)) return ConstantTimeEquals(Md5Secret(password, user), stored);
  return ConstantTimeEquals(password, stored);
}

}  // namespace rb::proto
