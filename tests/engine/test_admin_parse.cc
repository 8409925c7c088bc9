// The admin console's query grammar (engine/admin_parse.h) against what PgBouncer's regexes
// accept and reject.
#include "engine/admin_parse.h"

#include <string>

#include "tests/catch.h"

namespace rb::engine {
namespace {

using Kind = AdminCommand::Kind;

TEST_CASE("admin parse: a command with an optional argument and semicolon in any case") {
  AdminCommand c = ParseAdminCommand("SHOW POOLS");
  CHECK(c.kind == Kind::kCommand);
  CHECK(c.cmd == "SHOW");
  CHECK(c.arg == "POOLS");

  c = ParseAdminCommand("  \t\r\npause\n;  ");
  CHECK(c.kind == Kind::kCommand);
  CHECK(c.cmd == "pause");
  CHECK(c.arg.empty());

  c = ParseAdminCommand("show pools;");
  CHECK(c.kind == Kind::kCommand);
  CHECK(c.arg == "pools");

  c = ParseAdminCommand("kill_client 1234");
  CHECK(c.kind == Kind::kCommand);
  CHECK(c.cmd == "kill_client");
  CHECK(c.arg == "1234");
}

TEST_CASE("admin parse: double-quoted words lose their quotes and doubled quotes") {
  AdminCommand c = ParseAdminCommand("PAUSE \"my db\"");
  CHECK(c.kind == Kind::kCommand);
  CHECK(c.arg == "my db");

  c = ParseAdminCommand("PAUSE \"a\"\"b\"");
  CHECK(c.kind == Kind::kCommand);
  CHECK(c.arg == "a\"b");

  c = ParseAdminCommand("\"show\" \"pools\"");
  CHECK(c.kind == Kind::kCommand);
  CHECK(c.cmd == "show");
  CHECK(c.arg == "pools");
}

TEST_CASE("admin parse: what the regexes refuse is a syntax error") {
  for (const char* q : {"", "   ", ";", "show pools extra", "show pools;;", "SELECT 1+1", "show-pools",
                        "show \"unterminated", "set x =", "set = 1", "set x = 1.5", "PAUSE db; PAUSE"}) {
    INFO("query: [" << q << "]");
    CHECK(ParseAdminCommand(q).kind == Kind::kSyntaxError);
  }
  // Two words are a command, whatever they say: dispatch finds no "set" command and answers
  // with the same syntax error, as PgBouncer's exec_cmd does.
  CHECK(ParseAdminCommand("set x").kind == Kind::kCommand);
}

TEST_CASE("admin parse: SET with a word, a double-quoted word or a single-quoted string") {
  AdminCommand c = ParseAdminCommand("SET default_pool_size = 50");
  CHECK(c.kind == Kind::kSet);
  CHECK(c.key == "default_pool_size");
  CHECK(c.value == "50");

  c = ParseAdminCommand("set server_reset_query TO 'DISCARD ALL';");
  CHECK(c.kind == Kind::kSet);
  CHECK(c.key == "server_reset_query");
  CHECK(c.value == "DISCARD ALL");

  c = ParseAdminCommand("set x='it''s'");
  CHECK(c.kind == Kind::kSet);
  CHECK(c.value == "it's");

  c = ParseAdminCommand("set \"x\" = \"a b\"");
  CHECK(c.kind == Kind::kSet);
  CHECK(c.key == "x");
  CHECK(c.value == "a b");

  c = ParseAdminCommand("set x = ''");
  CHECK(c.kind == Kind::kSet);
  CHECK(c.value.empty());

  // The regex backtracks into a bare key to find the TO separator, as PgBouncer's does.
  c = ParseAdminCommand("set keyto 5");
  CHECK(c.kind == Kind::kSet);
  CHECK(c.key == "key");
  CHECK(c.value == "5");
}

TEST_CASE("admin parse: parts longer than PgBouncer's buffers are bad arguments") {
  CHECK(ParseAdminCommand(std::string(15, 'a')).kind == Kind::kCommand);
  CHECK(ParseAdminCommand(std::string(16, 'a')).kind == Kind::kBadArguments);
  CHECK(ParseAdminCommand("show " + std::string(63, 'x')).kind == Kind::kCommand);
  CHECK(ParseAdminCommand("show " + std::string(64, 'x')).kind == Kind::kBadArguments);
  CHECK(ParseAdminCommand("set k = '" + std::string(253, 'v') + "'").kind == Kind::kSet);
  CHECK(ParseAdminCommand("set k = '" + std::string(254, 'v') + "'").kind == Kind::kBadArguments);
  CHECK(ParseAdminCommand("set " + std::string(64, 'k') + " = 1").kind == Kind::kBadArguments);
  CHECK(ParseAdminCommand("set \"\" = 1").kind == Kind::kBadArguments);
  // Far past every buffer, and not a command at all: a syntax error, as the regex fails first.
  CHECK(ParseAdminCommand(std::string(100000, '!')).kind == Kind::kSyntaxError);
}

TEST_CASE("admin parse: error texts are cut to PgBouncer's 1023 bytes") {
  CHECK(TruncateAdminMessage("short") == "short");
  CHECK(TruncateAdminMessage(std::string(5000, 'x')).size() == 1023);
}

TEST_CASE("admin parse: junk never crashes and always classifies") {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  const char alphabet[] = "setSHOW pause\"';=to_ \t\n0123456789abc";
  for (int round = 0; round < 20000; ++round) {
    std::string q;
    int len = static_cast<int>(x % 40);
    for (int i = 0; i < len; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      q.push_back(alphabet[x % (sizeof(alphabet) - 1)]);
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    AdminCommand c = ParseAdminCommand(q);
    CHECK((c.kind == Kind::kCommand || c.kind == Kind::kSet || c.kind == Kind::kSyntaxError ||
           c.kind == Kind::kBadArguments));
  }
}

}  // namespace
}  // namespace rb::engine
