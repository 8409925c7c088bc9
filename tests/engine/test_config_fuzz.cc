// Seeded random junk through the ini tokenizer, the connection-string parser, the auth and hba
// parsers and the whole loader: every input ends in values or typed errors, never a crash (run
// under ASan/UBSan). The seed is fixed so a failure reproduces; bytes that ever crash go into
// the regression list below.
#include <random>
#include <string>
#include <vector>

#include "engine/auth_file.h"
#include "engine/config.h"
#include "engine/hba.h"
#include "engine/ini.h"
#include "tests/catch.h"

namespace rb::engine {
namespace {

// Lines that exercise every branch, to be mutated.
const std::vector<std::string> kSeeds = {
    "[pgbouncer]",
    "[databases]",
    "[users]",
    "[peers]",
    "listen_port = 6432",
    "unix_socket_mode = 0777",
    "server_idle_timeout = 0.5",
    "pool_mode = transaction",
    "admin_users = a, b,, c",
    "log_connections = yes",
    "%include other.ini",
    "; comment",
    "# comment",
    "app = host=db1,db2 port=5432,5433 password='it''s' pool_size=5",
    "\"my db\" = host=/tmp dbname=x",
    "'q' = host=@abstract",
    "* = host=fallback",
    "alice = pool_mode=session max_user_connections=3 query_timeout=1.5",
    "1 = host=10.0.0.1 port=6433 pool_size=2",
    "\"alice\" \"md50123456789abcdef0123456789abcdef\"",
    "host all,\"x\" @f.txt 10.0.0.0/8 scram-sha-256 map=m",
    "local replication all peer",
};

const char kAlphabet[] = "[]=;#%'\" \t\r\n,\\/@*._-0123456789abcdefxyzAEX\x00\x7f\xc3\xff";

std::string RandomLine(std::mt19937& rng) {
  std::uniform_int_distribution<int> pick(0, 9);
  std::string line;
  if (pick(rng) < 7) {
    line = kSeeds[std::uniform_int_distribution<size_t>(0, kSeeds.size() - 1)(rng)];
    const int edits = std::uniform_int_distribution<int>(1, 4)(rng);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = line.empty() ? 0 : std::uniform_int_distribution<size_t>(0, line.size())(rng);
      const char c = kAlphabet[std::uniform_int_distribution<size_t>(0, sizeof kAlphabet - 2)(rng)];
      switch (pick(rng) % 3) {
        case 0:
          line.insert(line.begin() + static_cast<long>(pos), c);
          break;
        case 1:
          if (pos < line.size()) line.erase(pos, 1);
          break;
        default:
          if (pos < line.size()) line[pos] = c;
          break;
      }
    }
  } else {
    const int len = std::uniform_int_distribution<int>(0, 60)(rng);
    for (int i = 0; i < len; ++i) {
      line.push_back(static_cast<char>(std::uniform_int_distribution<int>(0, 255)(rng)));
    }
  }
  return line;
}

TEST_CASE("100000 random and mutated lines through the tokenizers end in values or errors",
          "[config][fuzz]") {
  std::mt19937 rng(20261128);
  size_t items = 0;
  size_t errors = 0;
  for (int i = 0; i < 100000; ++i) {
    const std::string line = RandomLine(rng);
    IniParseResult ini = ParseIni(line, "fuzz.ini");
    items += ini.items.size();
    errors += ini.errors.size();
    for (const IniItem& item : ini.items) {
      if (item.kind != IniItem::Kind::kKeyValue) continue;
      (void)ParseConnString(item.value);
      (void)ParseDatabaseEntry(item.key, item.value);
      (void)ParseUserEntry(item.key, item.value);
      (void)ParsePeerEntry(item.key, item.value);
      if (const SettingDef* def = FindSetting(item.key)) {
        Settings s;
        if (SetSettingValue(s, *def, item.value).ok()) (void)GetSettingValue(s, *def);
      }
    }
    absl::StatusOr<std::vector<ConnParam>> conn = ParseConnString(line);
    if (conn.ok()) {
      for (const ConnParam& p : *conn) CHECK_FALSE(p.second.empty());
    } else {
      CHECK(conn.status().code() == absl::StatusCode::kInvalidArgument);
    }
    (void)ParseAuthFile(line, "userlist.txt");
    (void)ParseHba(line, "hba.conf", "/nonexistent");
  }
  // The junk must have reached both outcomes, or the test proves little.
  CHECK(items > 10000);
  CHECK(errors > 10000);
}

TEST_CASE("2000 random whole files through the loader end in a config or errors", "[config][fuzz]") {
  std::mt19937 rng(7);
  size_t loaded = 0;
  for (int f = 0; f < 2000; ++f) {
    std::string text = "[pgbouncer]\n";
    const int lines = std::uniform_int_distribution<int>(0, 40)(rng);
    for (int i = 0; i < lines; ++i) text += RandomLine(rng) + "\n";
    LoadOptions options{.working_dir = "/nonexistent", .load_auth_file = false, .load_hba_file = false};
    LoadResult r = LoadConfigText(text, "fuzz.ini", options);
    CHECK(r.ok() == r.config.ok());
    if (r.ok()) {
      ++loaded;
      for (const SettingDef& def : AllSettings()) (void)GetSettingValue(r.config->settings, def);
    } else {
      CHECK_FALSE(r.errors.empty());
    }
  }
  CHECK(loaded > 0);
}

TEST_CASE("regression inputs from fuzzing stay handled", "[config][fuzz]") {
  const std::vector<std::string> inputs = {
      std::string("\0", 1),
      "\"",
      "'",
      "=",
      "[",
      "]",
      "%include \t",
      "a='",
      "a=''",
      "a=''''",
      "host all all 1.2.3.4/ md5",
      "host all all ::/128 md5",
      "\"\"\"\" \"\"",
  };
  for (const std::string& in : inputs) {
    (void)ParseIni(in, "r.ini");
    (void)ParseConnString(in);
    (void)ParseAuthFile(in, "r.txt");
    (void)ParseHba(in, "r.conf", "");
  }
  SUCCEED();
}

}  // namespace
}  // namespace rb::engine
