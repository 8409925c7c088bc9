// Client authentication against the auth_file: trust, plain, md5 and SCRAM, with md5, SCRAM and
// plain secrets, and the server login each leads to (PostgreSQL's own pg_hba demands md5 of
// rb_md5 and SCRAM of rb_scram, so a query that works proves the server login worked too).
#include <chrono>
#include <optional>
#include <string>

#include "tests/catch.h"
#include "tests/support/pg_client.h"
#include "tests/support/pg_cluster.h"
#include "tests/support/raw_client.h"
#include "tests/support/ringbouncer_process.h"

namespace rb::test {
namespace {

using namespace std::chrono_literals;

constexpr int kAuthOk = 0;
constexpr int kAuthCleartext = 3;
constexpr int kAuthMd5 = 5;
constexpr int kAuthSasl = 10;

PgCluster& Pg() {
  static PgCluster cluster;
  return cluster;
}

// The authentication request ringbouncer answers a StartupMessage for `user` with (the int32 of
// its first 'R' message), or -1 if something else came.
int AuthRequestFor(const RingbouncerProcess& rb, const std::string& user) {
  RawClient c = RawClient::Connect(rb.Host(), rb.Port());
  c.Send(RawClient::StartupMessage({{"user", user}, {"database", std::string(kTestDb)}}));
  std::optional<RawMessage> m = c.ReadMessage(10s);
  if (!m || m->type != 'R' || m->body.size() < 4) return -1;
  return (static_cast<uint8_t>(m->body[0]) << 24) | (static_cast<uint8_t>(m->body[1]) << 16) |
         (static_cast<uint8_t>(m->body[2]) << 8) | static_cast<uint8_t>(m->body[3]);
}

// Logs in as `user` through ringbouncer and checks that a query reaches PostgreSQL as that user.
void ExpectLoginWorks(const RingbouncerProcess& rb, const std::string& user,
                      const std::string& extra = "") {
  QueryResult r = Query(rb.ConnString(user, kTestDb, extra),
                        "SELECT current_user || '@' || current_database()");
  INFO(user << ": [" << r.sqlstate << "] " << r.error);
  INFO("ringbouncer log:\n" << rb.LogTail());
  REQUIRE(r.ok);
  CHECK(r.Scalar() == user + "@rbtest");
}

TEST_CASE("trust lets in a user listed in the auth_file without a password, and no one else",
          "[integration][engine][auth]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", "trust"}}});
  CHECK(AuthRequestFor(rb, "rb_trust") == kAuthOk);
  ExpectLoginWorks(rb, "rb_trust");
  // rb_md5 is in the auth_file too: no password asked of the client, and ringbouncer logs in to
  // PostgreSQL with the md5 secret.
  ExpectLoginWorks(rb, "rb_md5", "password=''");
  // PgBouncer's trust still wants the user in the auth_file.
  PgConn stranger = PgConn::Connect(rb.ConnString("nobody"));
  INFO(stranger.Error());
  CHECK_FALSE(stranger.Ok());
  CHECK(stranger.SqlState() == "28P01");
}

TEST_CASE("md5 auth accepts an md5 client with the md5 secret from pg_authid",
          "[integration][engine][auth]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", "md5"}},
                               .userlist = {Pg().UserlistEntry("rb_md5")}});
  CHECK(AuthRequestFor(rb, "rb_md5") == kAuthMd5);
  ExpectLoginWorks(rb, "rb_md5");
}

TEST_CASE("md5 auth accepts an md5 client with a plain password in the auth_file",
          "[integration][engine][auth]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", "md5"}},
                               .userlist = {UserlistPlain("rb_md5", "md5pass")}});
  CHECK(AuthRequestFor(rb, "rb_md5") == kAuthMd5);
  ExpectLoginWorks(rb, "rb_md5");
}

TEST_CASE("SCRAM auth with the secret from pg_authid logs the client in and passes its keys on "
          "to PostgreSQL",
          "[integration][engine][auth]") {
  // Only the SCRAM secret is known: ringbouncer can log in to PostgreSQL (which demands SCRAM of
  // rb_scram) only with the ClientKey it recovers from the client's own SCRAM proof.
  RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", "scram-sha-256"}},
                               .userlist = {Pg().UserlistEntry("rb_scram")}});
  CHECK(AuthRequestFor(rb, "rb_scram") == kAuthSasl);
  ExpectLoginWorks(rb, "rb_scram");
  // A second client on the same pool, once the first one's server is back in the pool or not.
  ExpectLoginWorks(rb, "rb_scram");
}

TEST_CASE("SCRAM auth works with a plain password in the auth_file",
          "[integration][engine][auth]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", "scram-sha-256"}},
                               .userlist = {UserlistPlain("rb_scram", "scrampass")}});
  CHECK(AuthRequestFor(rb, "rb_scram") == kAuthSasl);
  ExpectLoginWorks(rb, "rb_scram");
}

TEST_CASE("md5 auth with a SCRAM secret switches the client to SCRAM",
          "[integration][engine][auth]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", "md5"}}});  // default userlist
  CHECK(AuthRequestFor(rb, "rb_scram") == kAuthSasl);
  CHECK(AuthRequestFor(rb, "rb_md5") == kAuthMd5);
  ExpectLoginWorks(rb, "rb_scram");
  ExpectLoginWorks(rb, "rb_md5");
}

TEST_CASE("plain auth takes a cleartext password and checks it against an md5 secret",
          "[integration][engine][auth]") {
  RingbouncerProcess rb(Pg(), {.settings = {{"auth_type", "plain"}},
                               .userlist = {Pg().UserlistEntry("rb_md5")}});
  CHECK(AuthRequestFor(rb, "rb_md5") == kAuthCleartext);
  ExpectLoginWorks(rb, "rb_md5");
  PgConn wrong = PgConn::Connect(rb.ConnString("rb_md5", kTestDb, "password=wrong"));
  CHECK(wrong.SqlState() == "28P01");
}

}  // namespace
}  // namespace rb::test
