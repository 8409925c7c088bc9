// auth_file (userlist.txt) parsing.
#include <string>
#include <vector>

#include "engine/auth_file.h"
#include "tests/catch.h"
#include "tests/engine/test_config_util.h"

namespace rb::engine {
namespace {

using testing::Strings;
using testing::TempDir;
using Lines = std::vector<std::string>;

const std::string kMd5 = "md5" + std::string("0123456789abcdef0123456789abcdef");
const std::string kScram =
    "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVka2V5c3RvcmVka2V5c3RvcmVka2V5MTI=:c2VydmVya2V5";

TEST_CASE("auth file lines are two double-quoted fields: user and secret", "[auth_file]") {
  AuthFileResult r = ParseAuthFile(
      "\"alice\" \"plain pass\"\n"
      "\"bob\"\t\"" + kMd5 + "\"\n"
      "\"carol\" \"" + kScram + "\"\n",
      "userlist.txt");
  REQUIRE(r.ok());
  CHECK(r.warnings.empty());
  REQUIRE(r.auth_file.users.size() == 3);
  const AuthUser* alice = r.auth_file.Find("alice");
  REQUIRE(alice != nullptr);
  CHECK(alice->secret == "plain pass");
  CHECK(alice->kind == SecretKind::kPlain);
  CHECK(alice->line == 1);
  CHECK(r.auth_file.Find("bob")->kind == SecretKind::kMd5);
  CHECK(r.auth_file.Find("carol")->kind == SecretKind::kScramSha256);
  CHECK(r.auth_file.Find("carol")->secret == kScram);
  CHECK(r.auth_file.Find("dave") == nullptr);
  CHECK(r.auth_file.path == "userlist.txt");
}

TEST_CASE("two double quotes inside a field stand for one", "[auth_file]") {
  AuthFileResult r = ParseAuthFile(R"("we""ird" "pa""ss""")" "\n", "userlist.txt");
  REQUIRE(r.ok());
  REQUIRE(r.auth_file.Find("we\"ird") != nullptr);
  CHECK(r.auth_file.Find("we\"ird")->secret == "pa\"ss\"");
}

TEST_CASE("comments and blank lines and CRLF and extra fields are ignored", "[auth_file]") {
  AuthFileResult r = ParseAuthFile(
      "; PgBouncer's comment\n"
      "# also a comment here\n"
      "\n"
      "   \t\n"
      "  \"alice\" \"a\" \"extra\" fields ; whatever\r\n"
      "\"bob\" \"b\"\r\n",
      "userlist.txt");
  REQUIRE(r.ok());
  CHECK(r.auth_file.users.size() == 2);
  CHECK(r.auth_file.Find("alice")->secret == "a");
  CHECK(r.auth_file.Find("bob")->secret == "b");
  CHECK(r.auth_file.Find("bob")->line == 6);
}

TEST_CASE("secrets are classified as PostgreSQL does", "[auth_file]") {
  CHECK(ClassifySecret("") == SecretKind::kNone);
  CHECK(ClassifySecret("hunter2") == SecretKind::kPlain);
  CHECK(ClassifySecret(kMd5) == SecretKind::kMd5);
  CHECK(ClassifySecret("md5" + std::string(32, 'A')) == SecretKind::kPlain);  // uppercase hex
  CHECK(ClassifySecret("md5" + std::string(31, 'a')) == SecretKind::kPlain);  // too short
  CHECK(ClassifySecret("md5" + std::string(33, 'a')) == SecretKind::kPlain);  // too long
  CHECK(ClassifySecret(kScram) == SecretKind::kScramSha256);
  CHECK(ClassifySecret("SCRAM-SHA-256$x:salt$a:b") == SecretKind::kPlain);   // iterations not a number
  CHECK(ClassifySecret("SCRAM-SHA-256$4096:salt$ab") == SecretKind::kPlain);  // no server key
  CHECK(ClassifySecret("SCRAM-SHA-256$4096:$a:b") == SecretKind::kPlain);     // empty salt
  CHECK(SecretKindName(SecretKind::kScramSha256) == "scram-sha-256");
}

TEST_CASE("an empty password means the user exists but no password matches", "[auth_file]") {
  AuthFileResult r = ParseAuthFile("\"nopass\" \"\"\n", "userlist.txt");
  REQUIRE(r.ok());
  CHECK(r.auth_file.Find("nopass")->kind == SecretKind::kNone);
}

TEST_CASE("a malformed SCRAM secret is a plain password with a warning", "[auth_file]") {
  AuthFileResult r = ParseAuthFile("\"u\" \"SCRAM-SHA-256$bad\"\n", "userlist.txt");
  REQUIRE(r.ok());
  CHECK(r.auth_file.Find("u")->kind == SecretKind::kPlain);
  CHECK(Strings(r.warnings) ==
        Lines{"userlist.txt:1: the password of user \"u\" starts like a SCRAM secret but is not "
              "one; it is used as a plain-text password"});
}

TEST_CASE("a user listed twice keeps the later entry with a warning", "[auth_file]") {
  AuthFileResult r = ParseAuthFile("\"u\" \"one\"\n\"v\" \"x\"\n\"u\" \"two\"\n", "userlist.txt");
  REQUIRE(r.ok());
  CHECK(r.auth_file.users.size() == 2);
  CHECK(r.auth_file.Find("u")->secret == "two");
  CHECK(r.auth_file.Find("u")->line == 3);
  CHECK(Strings(r.warnings) ==
        Lines{"userlist.txt:3: user \"u\" is listed again (first at line 1); this later entry is "
              "used"});
}

TEST_CASE("broken lines are errors naming file and line without revealing secrets", "[auth_file]") {
  AuthFileResult r = ParseAuthFile(
      "alice secret\n"
      "\"bob secret\n"
      "\"carol\"\n"
      "\"dave\" secret\n"
      "\"erin\" \"unterminated\n"
      "\"\" \"pw\"\n"
      "\"frank\" \"ok\"\n",
      "userlist.txt");
  CHECK(Strings(r.errors) ==
        Lines{
            "userlist.txt:1: expected a double-quoted user name",
            "userlist.txt:2: user name has no closing double quote",
            "userlist.txt:3: expected a double-quoted password after user \"carol\"",
            "userlist.txt:4: expected a double-quoted password after user \"dave\"",
            "userlist.txt:5: password of user \"erin\" has no closing double quote",
            "userlist.txt:6: empty user name",
        });
  // The good line is still parsed, so one pass reports everything.
  CHECK(r.auth_file.Find("frank") != nullptr);
  for (const std::string& e : Strings(r.errors)) CHECK(e.find("unterminated") == std::string::npos);
}

TEST_CASE("LoadAuthFile reads a file and reports one that cannot be read", "[auth_file]") {
  TempDir dir;
  dir.Write("users.txt", "\"a\" \"b\"\n");
  AuthFileResult ok = LoadAuthFile(dir.Join("users.txt"));
  REQUIRE(ok.ok());
  CHECK(ok.auth_file.users.size() == 1);
  AuthFileResult relative = LoadAuthFile("users.txt", dir.path());
  REQUIRE(relative.ok());
  CHECK(relative.auth_file.path == "users.txt");

  AuthFileResult missing = LoadAuthFile("missing.txt", dir.path());
  CHECK(Strings(missing.errors) ==
        Lines{"missing.txt: could not read \"" + dir.Join("missing.txt") +
              "\": No such file or directory"});
  AuthFileResult directory = LoadAuthFile(dir.path());
  CHECK(Strings(directory.errors) ==
        Lines{dir.path() + ": could not read \"" + dir.path() + "\": Is a directory"});
}

}  // namespace
}  // namespace rb::engine
