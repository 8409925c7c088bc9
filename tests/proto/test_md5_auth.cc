#include "proto/md5_auth.h"

#include <string>

#include "tests/catch.h"

namespace rb::proto {
namespace {

// Checked with: echo -n postgrespostgres | md5sum  ->  3175bce1d3201d16594cebf9d7eb3f9d
constexpr absl::string_view kPostgresSecret = "md53175bce1d3201d16594cebf9d7eb3f9d";
constexpr Md5Salt kSalt = {0x01, 0x02, 0x03, 0x04};
// "md5" + md5("3175bce1d3201d16594cebf9d7eb3f9d" + "\x01\x02\x03\x04"), from Python's hashlib.
constexpr absl::string_view kPostgresResponse = "md568be9ed08db75f318087ab337aaea044";

TEST_CASE("md5 secret is md5 of password then user, lowercase hex", "[auth][md5]") {
  CHECK(Md5Secret("postgres", "postgres") == kPostgresSecret);
  CHECK(Md5Secret("postgres", "postgres").size() == kMd5SecretLength);
  // The user name salts the hash.
  CHECK(Md5Secret("postgres", "alice") != kPostgresSecret);
}

TEST_CASE("md5 secret recognition follows PostgreSQL's shape test", "[auth][md5]") {
  CHECK(IsMd5Secret(kPostgresSecret));
  CHECK_FALSE(IsMd5Secret("md53175BCE1D3201D16594CEBF9D7EB3F9D"));  // uppercase: plain text
  CHECK_FALSE(IsMd5Secret("md53175bce1d3201d16594cebf9d7eb3f9"));   // too short
  CHECK_FALSE(IsMd5Secret("md53175bce1d3201d16594cebf9d7eb3f9dd"));  // too long
  CHECK_FALSE(IsMd5Secret("xyz3175bce1d3201d16594cebf9d7eb3f9d"));
  CHECK_FALSE(IsMd5Secret("md53175bce1d3201d16594cebf9d7eb3f9g"));
  CHECK_FALSE(IsMd5Secret(""));
}

TEST_CASE("md5 client response matches a known vector", "[auth][md5]") {
  CHECK(Md5ClientResponse("postgres", "postgres", kSalt) == kPostgresResponse);
}

TEST_CASE("md5 client response from a plain password and from its md5 secret agree",
          "[auth][md5]") {
  const Md5Salt salt = {0xde, 0xad, 0xbe, 0xef};
  const std::string secret = Md5Secret("correct horse", "bob");
  CHECK(Md5ClientResponse("correct horse", "bob", salt) == Md5ClientResponse(secret, "bob", salt));
  // Another salt, another response.
  CHECK(Md5ClientResponse(secret, "bob", salt) != Md5ClientResponse(secret, "bob", kSalt));
}

TEST_CASE("md5 server verifies against a plain password or an md5 secret", "[auth][md5]") {
  CHECK(Md5VerifyResponse("postgres", "postgres", kSalt, kPostgresResponse) ==
        Md5VerifyResult::kOk);
  CHECK(Md5VerifyResponse(kPostgresSecret, "postgres", kSalt, kPostgresResponse) ==
        Md5VerifyResult::kOk);
}

TEST_CASE("md5 server rejects a wrong password, user or salt", "[auth][md5]") {
  const std::string wrong = Md5ClientResponse("postgrez", "postgres", kSalt);
  CHECK(Md5VerifyResponse("postgres", "postgres", kSalt, wrong) ==
        Md5VerifyResult::kWrongPassword);
  CHECK(Md5VerifyResponse("postgres", "alice", kSalt, kPostgresResponse) ==
        Md5VerifyResult::kWrongPassword);
  CHECK(Md5VerifyResponse("postgres", "postgres", Md5Salt{4, 3, 2, 1}, kPostgresResponse) ==
        Md5VerifyResult::kWrongPassword);
}

TEST_CASE("md5 server rejects malformed responses with a typed result", "[auth][md5]") {
  for (absl::string_view bad :
       {absl::string_view(""), absl::string_view("md5"), absl::string_view("postgres"),
        absl::string_view("md568be9ed08db75f318087ab337aaea04"),
        absl::string_view("md568BE9ED08DB75F318087AB337AAEA044"),
        absl::string_view("md568be9ed08db75f318087ab337aaea044\n"),
        absl::string_view("md568be9ed08db75f318087ab337aaea04\0", 35)}) {
    CHECK(Md5VerifyResponse("postgres", "postgres", kSalt, bad) ==
          Md5VerifyResult::kBadResponse);
  }
}

TEST_CASE("md5 secret already holds its user name, so the login name no longer salts it",
          "[auth][md5]") {
  // As in PostgreSQL: the stored hash is checked as is. Only a plain password is re-salted
  // with the name the client logs in with.
  CHECK(Md5VerifyResponse(kPostgresSecret, "alice", kSalt, kPostgresResponse) ==
        Md5VerifyResult::kOk);
  CHECK(Md5ClientResponse(kPostgresSecret, "alice", kSalt) == kPostgresResponse);
}

TEST_CASE("md5 cannot be verified against a SCRAM secret", "[auth][md5]") {
  constexpr absl::string_view kScram =
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
      "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
  CHECK(Md5VerifyResponse(kScram, "user", kSalt, kPostgresResponse) ==
        Md5VerifyResult::kUnusableSecret);
  CHECK(absl::string_view(Md5VerifyResultName(Md5VerifyResult::kUnusableSecret)).size() > 0);
}

TEST_CASE("md5 passwords are bytes: empty and non-ASCII work on both sides", "[auth][md5]") {
  for (absl::string_view pw : {absl::string_view(""), absl::string_view("h\xc3\xa9llo")}) {
    const std::string response = Md5ClientResponse(pw, "u", kSalt);
    CHECK(Md5VerifyResponse(pw, "u", kSalt, response) == Md5VerifyResult::kOk);
    CHECK(Md5VerifyResponse(Md5Secret(pw, "u"), "u", kSalt, response) == Md5VerifyResult::kOk);
  }
}

TEST_CASE("md5 plain-text password check works against plain and md5 secrets", "[auth][md5]") {
  CHECK(Md5VerifyPlainPassword("postgres", "postgres", "postgres"));
  CHECK(Md5VerifyPlainPassword(kPostgresSecret, "postgres", "postgres"));
  CHECK_FALSE(Md5VerifyPlainPassword(kPostgresSecret, "postgres", "postgrez"));
  CHECK_FALSE(Md5VerifyPlainPassword(kPostgresSecret, "alice", "postgres"));
  CHECK_FALSE(Md5VerifyPlainPassword("postgres", "postgres", "postgres "));
  CHECK_FALSE(Md5VerifyPlainPassword("postgres", "postgres", ""));
  constexpr absl::string_view kScramLike = "SCRAM-SHA-256$4096:AAAA$AAAA:AAAA";
  CHECK_FALSE(Md5VerifyPlainPassword(kScramLike, "u", kScramLike));
}

}  // namespace
}  // namespace rb::proto
