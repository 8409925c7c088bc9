// ringbouncer's configuration: pgbouncer.ini with its [pgbouncer], [databases], [users] and
// [peers] sections and %include, plus the auth_file and auth_hba_file it names.
//
// Compatibility: every PgBouncer 1.25 setting is recognised, values are parsed by PgBouncer's rules,
// and a file PgBouncer loads also loads here. Settings ringbouncer does not act on are accepted with
// a warning. All [pgbouncer] settings are described by one table (AllSettings(), defined at the top
// of config.cc): type, default, whether RELOAD may change it, and ringbouncer's support level. The
// loader, `--check`, SHOW CONFIG and SET all go through that table; the README's settings table is generated
// from it.
//
// Snapshots (DESIGN.md decision 8): the loader builds a Config, a plain copyable value with no
// pointers into the loader. The control thread publishes it as shared_ptr<const Config>; workers
// read the typed fields directly. A file with any error loads nothing: LoadResult::config then holds
// an error status and the caller keeps its old snapshot. Every error and warning names file:line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/auth_file.h"
#include "engine/hba.h"
#include "engine/ini.h"

namespace rb::engine {

// ---------------------------------------------------------------------------------------------
// Enumerated values. Names as in PgBouncer; parsing is case-insensitive, as in PgBouncer.

enum class PoolMode { kSession, kTransaction, kStatement };
enum class AuthType { kAny, kTrust, kPlain, kMd5, kCert, kHba, kLdap, kPam, kScramSha256 };
enum class SslMode { kDisable, kAllow, kPrefer, kRequire, kVerifyCa, kVerifyFull };
enum class LoadBalanceHosts { kRoundRobin, kDisable };
enum class TargetSessionAttrs { kAny, kReadWrite, kReadOnly, kPrimary, kStandby };

std::string_view PoolModeName(PoolMode v);
std::string_view AuthTypeName(AuthType v);
std::string_view SslModeName(SslMode v);
std::string_view LoadBalanceHostsName(LoadBalanceHosts v);
std::string_view TargetSessionAttrsName(TargetSessionAttrs v);

// ---------------------------------------------------------------------------------------------
// [pgbouncer]: one typed field per setting, named like the setting. Times are absl::Duration
// (PgBouncer reads them as seconds, fractions allowed). Lists are comma-separated in the file,
// with blanks around items removed. Defaults are PgBouncer 1.25's (see AllSettings()).

struct Settings {
  // Listening.
  std::vector<std::string> listen_addr;  // empty: Unix socket only; "*": every address
  int listen_port = 6432;
  int listen_backlog = 128;
  std::string unix_socket_dir = "/tmp";  // "" disables; "@name" is the abstract namespace
  int unix_socket_mode = 0777;
  std::string unix_socket_group;
  bool so_reuseport = false;
  int peer_id = 0;  // 0: no peering

  // Process.
  std::string logfile;
  std::string pidfile;
  std::string user;  // Unix user to switch to
  std::string conffile;  // the file this config was loaded from
  std::string job_name = "pgbouncer";
  bool syslog = false;
  std::string syslog_ident = "pgbouncer";
  std::string syslog_facility = "daemon";
  int verbose = 0;
  bool log_connections = true;
  bool log_disconnections = true;
  bool log_pooler_errors = true;
  bool log_stats = true;
  int stats_period = 60;  // seconds

  // Authentication.
  AuthType auth_type = AuthType::kMd5;
  std::string auth_file;
  std::string auth_hba_file;
  std::string auth_ident_file;
  std::string auth_ldap_options;
  std::string auth_user;
  std::string auth_query =
      "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM "
      "pg_authid WHERE rolname=$1 AND rolcanlogin";
  std::string auth_dbname;
  int scram_iterations = 4096;
  std::vector<std::string> admin_users;
  std::vector<std::string> stats_users;

  // Pools and limits.
  PoolMode pool_mode = PoolMode::kSession;
  int max_client_conn = 100;
  int default_pool_size = 20;
  int min_pool_size = 0;
  int reserve_pool_size = 0;
  absl::Duration reserve_pool_timeout = absl::Seconds(5);
  int max_db_connections = 0;  // 0: unlimited (same for the three below)
  int max_db_client_connections = 0;
  int max_user_connections = 0;
  int max_user_client_connections = 0;
  int max_prepared_statements = 200;
  bool server_round_robin = false;
  bool server_fast_close = false;
  std::string server_reset_query = "DISCARD ALL";
  bool server_reset_query_always = false;
  std::string server_check_query = "<empty>";  // "<empty>": send an empty query; "": no check
  absl::Duration server_check_delay = absl::Seconds(30);
  std::vector<std::string> ignore_startup_parameters;
  std::vector<std::string> track_extra_parameters = {"IntervalStyle"};
  bool application_name_add_host = false;
  bool disable_pqexec = false;
  int64_t max_packet_size = 2147483647;

  // Timeouts (zero disables the ones documented as "0 disables").
  absl::Duration server_lifetime = absl::Seconds(3600);
  absl::Duration server_idle_timeout = absl::Seconds(600);
  absl::Duration server_connect_timeout = absl::Seconds(15);
  absl::Duration server_login_retry = absl::Seconds(15);
  absl::Duration client_login_timeout = absl::Seconds(60);
  absl::Duration autodb_idle_timeout = absl::Seconds(3600);
  absl::Duration query_timeout = absl::ZeroDuration();
  absl::Duration query_wait_timeout = absl::Seconds(120);
  int query_wait_notify = 5;  // seconds
  absl::Duration cancel_wait_timeout = absl::Seconds(10);
  absl::Duration client_idle_timeout = absl::ZeroDuration();
  absl::Duration idle_transaction_timeout = absl::ZeroDuration();
  absl::Duration transaction_timeout = absl::ZeroDuration();
  absl::Duration suspend_timeout = absl::Seconds(10);

  // DNS.
  absl::Duration dns_max_ttl = absl::Seconds(15);
  absl::Duration dns_nxdomain_ttl = absl::Seconds(15);
  absl::Duration dns_zone_check_period = absl::ZeroDuration();
  std::string resolv_conf;

  // TLS.
  SslMode client_tls_sslmode = SslMode::kDisable;
  std::string client_tls_key_file;
  std::string client_tls_cert_file;
  std::string client_tls_ca_file;
  std::string client_tls_protocols = "secure";
  std::string client_tls_ciphers = "default";
  std::string client_tls13_ciphers;
  std::string client_tls_ecdhcurve = "auto";
  std::string client_tls_dheparams = "auto";
  SslMode server_tls_sslmode = SslMode::kPrefer;
  std::string server_tls_ca_file;
  std::string server_tls_key_file;
  std::string server_tls_cert_file;
  std::string server_tls_protocols = "secure";
  std::string server_tls_ciphers = "default";
  std::string server_tls13_ciphers;

  // Low-level network.
  int pkt_buf = 4096;
  int sbuf_loopcnt = 5;
  bool tcp_defer_accept = true;
  int tcp_socket_buffer = 0;
  bool tcp_keepalive = true;
  int tcp_keepcnt = 0;
  int tcp_keepidle = 0;   // seconds
  int tcp_keepintvl = 0;  // seconds
  int tcp_user_timeout = 0;  // milliseconds

  // ringbouncer's own settings.
  std::string metrics_listen;  // "host:port" of the Prometheus endpoint (GET /metrics); empty: off
  int workers = 0;  // 0: one per online CPU

  // `workers`, with 0 resolved to the number of online CPUs (at least 1).
  int EffectiveWorkers() const;
};

// ---------------------------------------------------------------------------------------------
// The settings table.

enum class SettingType {
  kInt,       // C integer: decimal, 0x hex or 0 octal (strtol base 0, as PgBouncer)
  kBool,      // 0/1 as in PgBouncer (any integer, nonzero is true); also yes/no, on/off, true/false
  kTime,      // seconds, fractions allowed ("0.5"); no units, as in PgBouncer
  kString,
  kList,      // comma-separated
  kEnum,      // one of fixed names, case-insensitive
  kFileMode,  // unix_socket_mode: an integer read like kInt, shown in octal
};

enum class Support {
  kSupported,  // ringbouncer acts on it
  kIgnored,    // accepted and has no effect in ringbouncer's design; a warning when set
  kNotYet,     // accepted, not implemented yet; a warning when set
};

enum class Origin { kPgBouncer, kRingbouncer };

// Where a setting's value lives in Settings.
using SettingField =
    std::variant<int Settings::*, int64_t Settings::*, bool Settings::*, absl::Duration Settings::*,
                 std::string Settings::*, std::vector<std::string> Settings::*, PoolMode Settings::*,
                 AuthType Settings::*, SslMode Settings::*>;

struct EnumChoice {
  std::string_view name;
  int value;  // the enum's value
  Support support;
};

struct SettingDef {
  std::string_view name;
  SettingType type;
  // PgBouncer's default as text, which is also what the field starts with. nullptr means "not
  // set": PgBouncer has no default, and a repeated [pgbouncer] header does not reset the setting.
  const char* default_text;
  bool reload;  // may RELOAD or SET change it; otherwise only a restart does
  Support support;
  Origin origin;
  int64_t min;  // kInt and kFileMode bounds (inclusive)
  int64_t max;
  absl::Span<const EnumChoice> choices;  // kEnum
  std::string_view note;  // one line for the README's settings table, may be empty
  SettingField field;
};

// Every [pgbouncer] setting, in SHOW CONFIG order (alphabetical, as PgBouncer).
absl::Span<const SettingDef> AllSettings();
// nullptr for an unknown name. Names are case-sensitive, as in PgBouncer.
const SettingDef* FindSetting(std::string_view name);
// Position of `def` in AllSettings().
size_t SettingIndex(const SettingDef& def);

// The current value as text, formatted like PgBouncer's SHOW CONFIG: integers in decimal, bools
// as 0/1, times as seconds ("%g"), enums by name, lists joined with ",", unix_socket_mode in octal.
std::string GetSettingValue(const Settings& settings, const SettingDef& def);

// One row of the admin console's SHOW CONFIG, whose columns are key, value, default, changeable.
struct ShowConfigRow {
  std::string key;
  std::string value;
  std::optional<std::string> default_value;  // nullopt: no default (PgBouncer shows NULL)
  bool changeable;                           // shown as "yes"/"no"
};
// Every setting, in table order.
std::vector<ShowConfigRow> ShowConfigRows(const Settings& settings);

// Parses `value` by the setting's rules and stores it. On error nothing changes and the status
// message says what is wrong, without a file name:
//   invalid value "abc" for "listen_port": expected an integer
absl::Status SetSettingValue(Settings& settings, const SettingDef& def, std::string_view value);

// The admin console's SET key = value: an unknown key or a setting that RELOAD cannot change
// is an error; otherwise as SetSettingValue.
absl::Status SetSettingAtRuntime(Settings& settings, std::string_view name, std::string_view value);

// PgBouncer ignores changes to non-reloadable settings on RELOAD. Copies every such setting from
// `running` into `next` and returns the names whose value in `next` was different (the caller
// logs that they need a restart).
std::vector<std::string> KeepNonReloadable(const Settings& running, Settings& next);

// A Settings holding every default (the constructor's values agree with the table; a test checks).
Settings DefaultSettings();

// ---------------------------------------------------------------------------------------------
// [databases], [users], [peers].

struct DatabaseConfig {
  std::string name;    // the name clients connect to
  std::string dbname;  // the server-side database; empty for the "*" entry (the client's name)
  std::vector<std::string> hosts;  // empty: Unix socket in unix_socket_dir; "/dir" or "@name" too
  std::vector<int> ports = {5432};  // one per host, or a single port for all
  std::optional<std::string> user;  // forced user: one pool for the database
  std::optional<std::string> password;
  std::optional<std::string> auth_user;
  std::optional<std::string> auth_query;
  std::optional<std::string> auth_dbname;
  std::optional<int> pool_size;
  std::optional<int> min_pool_size;
  std::optional<int> reserve_pool_size;
  std::optional<int> max_db_connections;
  std::optional<int> max_db_client_connections;
  std::optional<PoolMode> pool_mode;
  std::optional<std::string> connect_query;
  std::optional<std::string> client_encoding;
  std::optional<std::string> datestyle;
  std::optional<std::string> timezone;
  std::optional<std::string> application_name;
  std::optional<absl::Duration> server_lifetime;
  std::optional<absl::Duration> query_wait_timeout;
  LoadBalanceHosts load_balance_hosts = LoadBalanceHosts::kRoundRobin;
  TargetSessionAttrs target_session_attrs = TargetSessionAttrs::kAny;
  std::string connstr;  // as written, for SHOW DATABASES and change detection
  std::string file;
  int line = 0;

  int PortFor(size_t host_index) const;
};

struct UserConfig {
  std::string name;
  std::optional<PoolMode> pool_mode;
  std::optional<int> pool_size;
  std::optional<int> reserve_pool_size;
  std::optional<int> max_user_connections;
  std::optional<int> max_user_client_connections;
  std::optional<absl::Duration> query_timeout;
  std::optional<absl::Duration> query_wait_timeout;
  std::optional<absl::Duration> idle_transaction_timeout;
  std::optional<absl::Duration> transaction_timeout;
  std::optional<absl::Duration> client_idle_timeout;
  std::string file;
  int line = 0;
};

struct PeerConfig {
  int peer_id = 0;
  std::string host;  // name, IP, "/dir" or "@name"
  int port = 6432;
  std::optional<int> pool_size;
  std::string file;
  int line = 0;
};

// Parse one entry's value (the part after '='). Errors have no file:line prefix.
absl::StatusOr<DatabaseConfig> ParseDatabaseEntry(std::string_view name, std::string_view connstr);
absl::StatusOr<UserConfig> ParseUserEntry(std::string_view name, std::string_view value);
absl::StatusOr<PeerConfig> ParsePeerEntry(std::string_view id, std::string_view connstr);

// ---------------------------------------------------------------------------------------------
// The snapshot.

struct Config {
  Settings settings;
  std::vector<DatabaseConfig> databases;  // in file order, one per name, without "*"
  std::optional<DatabaseConfig> fallback_database;  // the "*" entry
  std::vector<UserConfig> users;
  std::vector<PeerConfig> peers;
  absl::flat_hash_map<std::string, size_t> database_index;
  absl::flat_hash_map<std::string, size_t> user_index;
  absl::flat_hash_map<int, size_t> peer_index;
  AuthFile auth_file;           // empty unless auth_file is set
  std::optional<HbaRules> hba;  // set when auth_type = hba

  const DatabaseConfig* FindDatabase(std::string_view name) const;  // exact name, no fallback
  const UserConfig* FindUser(std::string_view name) const;
  const PeerConfig* FindPeer(int peer_id) const;
};

struct LoadOptions {
  // Relative %include, auth_file and auth_hba_file paths are resolved against this directory.
  // Empty: the process's working directory, which is what PgBouncer does.
  std::string working_dir;
  bool load_auth_file = true;  // read auth_file when it is set
  bool load_hba_file = true;   // read auth_hba_file when auth_type = hba
};

struct LoadResult {
  // The config, or InvalidArgument whose message lists every error, one per line.
  absl::StatusOr<Config> config;
  std::vector<Diagnostic> warnings;
  std::vector<Diagnostic> errors;
  bool ok() const { return errors.empty(); }
};

// Loads pgbouncer.ini from `path`. Messages name files as written (the path given here, and
// %include paths as written in the file).
LoadResult LoadConfigFile(const std::string& path, const LoadOptions& options = {});
// The same, for text already in memory; `file_name` is used in messages.
LoadResult LoadConfigText(std::string_view text, const std::string& file_name,
                          const LoadOptions& options = {});

// metrics_listen's "host:port": a name or IPv4 address, "*" for every address, or "[IPv6]",
// then a port from 1 to 65535. The host comes back without brackets.
absl::Status ParseHostPort(std::string_view text, std::string* host, int* port);

// The README's settings section (between its settings markers), generated from AllSettings().
std::string RenderSettingsMarkdown();

}  // namespace rb::engine
