// [pgbouncer] settings: the table, and every value type with its errors, word for word.
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/config.h"
#include "tests/catch.h"
#include "tests/engine/test_config_util.h"

namespace rb::engine {
namespace {

using testing::LoadSettings;
using testing::Strings;

const SettingDef& Def(std::string_view name) {
  const SettingDef* def = FindSetting(name);
  REQUIRE(def != nullptr);
  return *def;
}

// Loads one "key = value" line and returns the value as SHOW CONFIG would print it.
std::string Loaded(std::string_view key, std::string_view value) {
  LoadResult r = LoadSettings(std::string(key) + " = " + std::string(value));
  INFO(Strings(r.errors).size());
  REQUIRE(r.ok());
  return GetSettingValue(r.config->settings, Def(key));
}

// The one warning of loading "key = value" on line 2 (which loads).
std::string WarningOf(std::string_view key, std::string_view value) {
  LoadResult r = LoadSettings(std::string(key) + " = " + std::string(value));
  REQUIRE(r.ok());
  REQUIRE(r.warnings.size() == 1);
  return r.warnings[0].ToString();
}

// The one error of loading "key = value" on line 2.
std::string ErrorOf(std::string_view key, std::string_view value) {
  LoadResult r = LoadSettings(std::string(key) + " = " + std::string(value));
  REQUIRE(r.errors.size() == 1);
  return r.errors[0].ToString();
}

// PgBouncer 1.25's bouncer_params (src/main.c), Unix build.
const std::vector<std::string> kPgBouncer125Settings = {
    "admin_users", "application_name_add_host", "auth_dbname", "auth_file", "auth_hba_file",
    "auth_ident_file", "auth_ldap_options", "auth_query", "auth_type", "auth_user",
    "autodb_idle_timeout", "cancel_wait_timeout", "client_idle_timeout", "client_login_timeout",
    "client_tls13_ciphers", "client_tls_ca_file", "client_tls_cert_file", "client_tls_ciphers",
    "client_tls_dheparams", "client_tls_ecdhcurve", "client_tls_key_file", "client_tls_protocols",
    "client_tls_sslmode", "conffile", "default_pool_size", "disable_pqexec", "dns_max_ttl",
    "dns_nxdomain_ttl", "dns_zone_check_period", "idle_transaction_timeout",
    "ignore_startup_parameters", "job_name", "listen_addr", "listen_backlog", "listen_port",
    "log_connections", "log_disconnections", "log_pooler_errors", "log_stats", "logfile",
    "max_client_conn", "max_db_client_connections", "max_db_connections", "max_packet_size",
    "max_prepared_statements", "max_user_client_connections", "max_user_connections",
    "min_pool_size", "peer_id", "pidfile", "pkt_buf", "pool_mode", "query_timeout",
    "query_wait_notify", "query_wait_timeout", "reserve_pool_size", "reserve_pool_timeout",
    "resolv_conf", "sbuf_loopcnt", "scram_iterations", "server_check_delay",
    "server_check_query", "server_connect_timeout", "server_fast_close", "server_idle_timeout",
    "server_lifetime", "server_login_retry", "server_reset_query", "server_reset_query_always",
    "server_round_robin", "server_tls13_ciphers", "server_tls_ca_file", "server_tls_cert_file",
    "server_tls_ciphers", "server_tls_key_file", "server_tls_protocols", "server_tls_sslmode",
    "so_reuseport", "stats_period", "stats_users", "suspend_timeout", "syslog", "syslog_facility",
    "syslog_ident", "tcp_defer_accept", "tcp_keepalive", "tcp_keepcnt", "tcp_keepidle",
    "tcp_keepintvl", "tcp_socket_buffer", "tcp_user_timeout", "track_extra_parameters",
    "transaction_timeout", "unix_socket_dir", "unix_socket_group", "unix_socket_mode", "user",
    "verbose",
};

TEST_CASE("the settings table holds every PgBouncer 1.25 setting and the ringbouncer settings",
          "[config][settings]") {
  std::vector<std::string> pgbouncer;
  std::vector<std::string> own;
  for (const SettingDef& def : AllSettings()) {
    (def.origin == Origin::kPgBouncer ? pgbouncer : own).emplace_back(def.name);
  }
  CHECK(pgbouncer == kPgBouncer125Settings);
  CHECK(own == std::vector<std::string>{"metrics_listen", "workers"});
}

TEST_CASE("the settings table is in alphabetical order as SHOW CONFIG lists it", "[config][settings]") {
  std::vector<std::string> names;
  for (const SettingDef& def : AllSettings()) names.emplace_back(def.name);
  CHECK(std::is_sorted(names.begin(), names.end()));
  CHECK(std::set<std::string>(names.begin(), names.end()).size() == names.size());
}

TEST_CASE("every default in the table parses and equals the initial value of its Settings field",
          "[config][settings]") {
  const Settings constructed;
  const Settings from_table = DefaultSettings();
  for (const SettingDef& def : AllSettings()) {
    INFO(def.name);
    if (def.default_text != nullptr) {
      Settings s;
      CHECK(SetSettingValue(s, def, def.default_text).ok());
    }
    CHECK(GetSettingValue(constructed, def) == GetSettingValue(from_table, def));
  }
}

TEST_CASE("SHOW CONFIG values of the defaults look like those of PgBouncer", "[config][settings]") {
  const Settings s;
  CHECK(GetSettingValue(s, Def("listen_port")) == "6432");
  CHECK(GetSettingValue(s, Def("server_idle_timeout")) == "600");
  CHECK(GetSettingValue(s, Def("pool_mode")) == "session");
  CHECK(GetSettingValue(s, Def("auth_type")) == "md5");
  CHECK(GetSettingValue(s, Def("server_tls_sslmode")) == "prefer");
  CHECK(GetSettingValue(s, Def("unix_socket_mode")) == "0777");
  CHECK(GetSettingValue(s, Def("track_extra_parameters")) == "IntervalStyle");
  CHECK(GetSettingValue(s, Def("log_connections")) == "1");
  CHECK(GetSettingValue(s, Def("max_packet_size")) == "2147483647");
  CHECK(GetSettingValue(s, Def("server_check_query")) == "<empty>");
  CHECK(GetSettingValue(s, Def("auth_file")) == "");
}

TEST_CASE("setting names are case-sensitive as in PgBouncer, and an unknown one warns with a hint",
          "[config][settings]") {
  CHECK(FindSetting("listen_port") != nullptr);
  CHECK(FindSetting("Listen_Port") == nullptr);
  CHECK(WarningOf("Listen_Port", "6000") ==
        "pgbouncer.ini:2: unknown setting \"Listen_Port\" (did you mean \"listen_port\"? setting "
        "names are case-sensitive); ignored");
  CHECK(WarningOf("no_such_thing", "1") == "pgbouncer.ini:2: unknown setting \"no_such_thing\"; ignored");
  CHECK(Loaded("listen_port", "6000") == "6000");
}

TEST_CASE("integers are read like strtol with base 0 as decimal or hex or octal", "[config][values]") {
  CHECK(Loaded("max_client_conn", "250") == "250");
  CHECK(Loaded("max_client_conn", "+250") == "250");
  CHECK(Loaded("max_client_conn", "0x20") == "32");
  CHECK(Loaded("max_client_conn", "010") == "8");
  CHECK(Loaded("max_client_conn", "0") == "0");
}

TEST_CASE("bad integers are errors that name the setting and the value", "[config][values]") {
  CHECK(ErrorOf("listen_port", "abc") ==
        "pgbouncer.ini:2: invalid value \"abc\" for \"listen_port\": expected an integer");
  CHECK(ErrorOf("listen_port", "64 32") ==
        "pgbouncer.ini:2: invalid value \"64 32\" for \"listen_port\": expected an integer");
  CHECK(ErrorOf("listen_port", "12abc") ==
        "pgbouncer.ini:2: invalid value \"12abc\" for \"listen_port\": expected an integer");
  CHECK(ErrorOf("listen_port", "08") ==
        "pgbouncer.ini:2: invalid value \"08\" for \"listen_port\": expected an integer");
  CHECK(ErrorOf("listen_port", "70000") ==
        "pgbouncer.ini:2: invalid value \"70000\" for \"listen_port\": must be between 1 and 65535");
  CHECK(ErrorOf("default_pool_size", "-1") ==
        "pgbouncer.ini:2: invalid value \"-1\" for \"default_pool_size\": must be between 0 and "
        "2147483647");
  CHECK(ErrorOf("default_pool_size", "99999999999999999999999") ==
        "pgbouncer.ini:2: invalid value \"99999999999999999999999\" for \"default_pool_size\": "
        "expected an integer");
  CHECK(ErrorOf("listen_port", "") ==
        "pgbouncer.ini:2: invalid value \"\" for \"listen_port\": expected an integer");
}

TEST_CASE("max_packet_size is unsigned as in PgBouncer", "[config][values]") {
  CHECK(Loaded("max_packet_size", "4294967295") == "4294967295");
  CHECK(ErrorOf("max_packet_size", "4294967296") ==
        "pgbouncer.ini:2: invalid value \"4294967296\" for \"max_packet_size\": must be between 0 "
        "and 4294967295");
}

TEST_CASE("booleans take integers like PgBouncer and also yes/no and on/off and true/false", "[config][values]") {
  CHECK(Loaded("log_connections", "0") == "0");
  CHECK(Loaded("log_connections", "1") == "1");
  CHECK(Loaded("log_connections", "2") == "1");
  CHECK(Loaded("log_connections", "yes") == "1");
  CHECK(Loaded("log_connections", "No") == "0");
  CHECK(Loaded("log_connections", "ON") == "1");
  CHECK(Loaded("log_connections", "off") == "0");
  CHECK(Loaded("log_connections", "true") == "1");
  CHECK(Loaded("log_connections", "FALSE") == "0");
  CHECK(ErrorOf("log_connections", "maybe") ==
        "pgbouncer.ini:2: invalid value \"maybe\" for \"log_connections\": expected 0 or 1 (or "
        "yes/no, on/off, true/false)");
}

TEST_CASE("times are seconds with fractions and no units as in PgBouncer", "[config][values]") {
  CHECK(Loaded("server_idle_timeout", "30") == "30");
  CHECK(Loaded("server_idle_timeout", "0.5") == "0.5");
  CHECK(Loaded("server_idle_timeout", "1e3") == "1000");
  CHECK(Loaded("server_idle_timeout", "1000000") == "1e+06");
  CHECK(Loaded("server_idle_timeout", "+2") == "2");
  LoadResult r = LoadSettings("query_timeout = 1.25");
  REQUIRE(r.ok());
  CHECK(r.config->settings.query_timeout == absl::Milliseconds(1250));
  CHECK(ErrorOf("server_idle_timeout", "10s") ==
        "pgbouncer.ini:2: invalid value \"10s\" for \"server_idle_timeout\": expected a number of "
        "seconds, such as 30 or 0.5");
  CHECK(ErrorOf("server_idle_timeout", "nan") ==
        "pgbouncer.ini:2: invalid value \"nan\" for \"server_idle_timeout\": expected a number of "
        "seconds, such as 30 or 0.5");
  CHECK(ErrorOf("server_idle_timeout", "inf") ==
        "pgbouncer.ini:2: invalid value \"inf\" for \"server_idle_timeout\": expected a number of "
        "seconds, such as 30 or 0.5");
  CHECK(ErrorOf("server_idle_timeout", "-1") ==
        "pgbouncer.ini:2: invalid value \"-1\" for \"server_idle_timeout\": must be between 0 and "
        "1e+12 seconds");
}

TEST_CASE("enums are case-insensitive and shown by their canonical name", "[config][values]") {
  CHECK(Loaded("pool_mode", "Transaction") == "transaction");
  CHECK(Loaded("pool_mode", "statement") == "statement");
  CHECK(Loaded("auth_type", "SCRAM-SHA-256") == "scram-sha-256");
  CHECK(Loaded("auth_type", "trust") == "trust");
  CHECK(ErrorOf("pool_mode", "fast") ==
        "pgbouncer.ini:2: invalid value \"fast\" for \"pool_mode\": expected one of session, "
        "transaction, statement");
  CHECK(ErrorOf("auth_type", "password") ==
        "pgbouncer.ini:2: invalid value \"password\" for \"auth_type\": expected one of any, trust, "
        "plain, md5, cert, hba, ldap, pam, scram-sha-256");
}

TEST_CASE("lists are split on commas and trimmed and empty items dropped", "[config][values]") {
  LoadResult r = LoadSettings("admin_users = alice, bob ,,carol \nlisten_addr = *");
  REQUIRE(r.ok());
  CHECK(r.config->settings.admin_users == std::vector<std::string>{"alice", "bob", "carol"});
  CHECK(r.config->settings.listen_addr == std::vector<std::string>{"*"});
  CHECK(GetSettingValue(r.config->settings, Def("admin_users")) == "alice,bob,carol");
  CHECK(Loaded("ignore_startup_parameters", "") == "");
  CHECK(Loaded("track_extra_parameters", "search_path, IntervalStyle") == "search_path,IntervalStyle");
}

TEST_CASE("strings are kept as written with quotes and semicolons part of the value", "[config][values]") {
  CHECK(Loaded("server_reset_query", "DISCARD ALL; -- not a comment") ==
        "DISCARD ALL; -- not a comment");
  CHECK(Loaded("logfile", "\"/var/log/x.log\"") == "\"/var/log/x.log\"");
  CHECK(Loaded("server_check_query", "") == "");
}

TEST_CASE("unix_socket_mode is read like C and shown in octal", "[config][values]") {
  CHECK(Loaded("unix_socket_mode", "0700") == "0700");
  LoadResult r = LoadSettings("unix_socket_mode = 0770");
  REQUIRE(r.ok());
  CHECK(r.config->settings.unix_socket_mode == 0770);
  CHECK(r.warnings.empty());

  // PgBouncer reads "777" as decimal 777: keep that meaning, and say so.
  LoadResult decimal = LoadSettings("unix_socket_mode = 777");
  REQUIRE(decimal.ok());
  CHECK(decimal.config->settings.unix_socket_mode == 777);
  CHECK(Strings(decimal.warnings) ==
        std::vector<std::string>{"pgbouncer.ini:2: unix_socket_mode = 777 is read as a decimal "
                                 "number (octal 1411), as in PgBouncer; write a leading 0 for octal"});
  CHECK(ErrorOf("unix_socket_mode", "0999") ==
        "pgbouncer.ini:2: invalid value \"0999\" for \"unix_socket_mode\": expected a file mode such "
        "as 0777");
  CHECK(ErrorOf("unix_socket_mode", "010000") ==
        "pgbouncer.ini:2: invalid value \"010000\" for \"unix_socket_mode\": expected a file mode "
        "such as 0777");
}

TEST_CASE("workers is a ringbouncer setting and 0 means one per online CPU", "[config][values]") {
  LoadResult r = LoadSettings("workers = 0");
  REQUIRE(r.ok());
  CHECK(r.warnings.empty());
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  CHECK(r.config->settings.EffectiveWorkers() == static_cast<int>(cpus));
  LoadResult four = LoadSettings("workers = 4");
  REQUIRE(four.ok());
  CHECK(four.config->settings.EffectiveWorkers() == 4);
  CHECK(Def("workers").origin == Origin::kRingbouncer);
  CHECK_FALSE(Def("workers").reload);
  CHECK(ErrorOf("workers", "-1") ==
        "pgbouncer.ini:2: invalid value \"-1\" for \"workers\": must be between 0 and 1024");
}

TEST_CASE("settings that are not supported yet or have no effect load with a warning each",
          "[config][values]") {
  LoadResult r = LoadSettings(
      "client_tls_sslmode = require\n"
      "pkt_buf = 8192\n"
      "auth_type = pam\n"
      "max_prepared_statements = 100");
  REQUIRE(r.ok());
  CHECK(Strings(r.warnings) ==
        std::vector<std::string>{
            "pgbouncer.ini:2: \"client_tls_sslmode\" is not supported yet by ringbouncer; ignored",
            "pgbouncer.ini:3: \"pkt_buf\" has no effect in ringbouncer; ignored",
            "pgbouncer.ini:4: auth_type = pam is not supported yet by ringbouncer; clients will be "
            "refused",
            "pgbouncer.ini:5: \"max_prepared_statements\" is not supported yet by ringbouncer; "
            "ignored",
        });
  // The values are still stored, so the engine can refuse what it cannot do.
  CHECK(r.config->settings.client_tls_sslmode == SslMode::kRequire);
  CHECK(r.config->settings.auth_type == AuthType::kPam);
}

TEST_CASE("SET at runtime refuses unknown and restart-only settings", "[config][values]") {
  Settings s;
  CHECK(SetSettingAtRuntime(s, "default_pool_size", "30").ok());
  CHECK(s.default_pool_size == 30);

  absl::Status restart = SetSettingAtRuntime(s, "listen_port", "7000");
  CHECK(restart.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(restart.message() ==
        "\"listen_port\" cannot be changed while running; change the file and restart");
  CHECK(s.listen_port == 6432);

  absl::Status unknown = SetSettingAtRuntime(s, "nope", "1");
  CHECK(unknown.code() == absl::StatusCode::kNotFound);
  CHECK(unknown.message() == "unknown setting \"nope\"");

  absl::Status bad = SetSettingAtRuntime(s, "default_pool_size", "many");
  CHECK(bad.message() == "invalid value \"many\" for \"default_pool_size\": expected an integer");
  CHECK(s.default_pool_size == 30);
}

TEST_CASE("a reload keeps restart-only settings and names the ones that changed", "[config][values]") {
  Settings running;
  running.listen_port = 6432;
  running.default_pool_size = 20;
  Settings next = running;
  next.listen_port = 7000;
  next.default_pool_size = 40;
  next.unix_socket_dir = "/run/rb";
  CHECK(KeepNonReloadable(running, next) ==
        std::vector<std::string>{"listen_port", "unix_socket_dir"});
  CHECK(next.listen_port == 6432);
  CHECK(next.unix_socket_dir == "/tmp");
  CHECK(next.default_pool_size == 40);
}

TEST_CASE("iterating the table gives key and value and default and reload for SHOW CONFIG",
          "[config][settings]") {
  LoadResult r = LoadSettings("listen_port = 7432\nserver_lifetime = 90");
  REQUIRE(r.ok());
  std::vector<std::string> rows;
  for (const SettingDef& def : AllSettings()) {
    if (def.name != "listen_port" && def.name != "server_lifetime") continue;
    rows.push_back(absl::StrCat(std::string(def.name), "|", GetSettingValue(r.config->settings, def), "|",
                                def.default_text, "|", def.reload ? "yes" : "no"));
  }
  CHECK(rows == std::vector<std::string>{"listen_port|7432|6432|no", "server_lifetime|90|3600|yes"});
}

TEST_CASE("ShowConfigRows gives the key and value and default and changeable columns of SHOW CONFIG", "[config][settings]") {
  Settings s;
  s.default_pool_size = 25;
  std::vector<ShowConfigRow> rows = ShowConfigRows(s);
  REQUIRE(rows.size() == AllSettings().size());
  CHECK(rows.front().key == "admin_users");
  auto find = [&](std::string_view key) -> const ShowConfigRow& {
    for (const ShowConfigRow& r : rows) {
      if (r.key == key) return r;
    }
    FAIL("no row " << key);
    return rows.front();
  };
  CHECK(find("default_pool_size").value == "25");
  CHECK(find("default_pool_size").default_value == "20");
  CHECK(find("default_pool_size").changeable);
  CHECK_FALSE(find("auth_file").default_value.has_value());
  CHECK_FALSE(find("listen_addr").changeable);
}

}  // namespace
}  // namespace rb::engine
