#include "engine/config.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <filesystem>
#include <system_error>
#include <type_traits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace rb::engine {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// =============================================================================================
// THE SETTINGS TABLE. One row per [pgbouncer] setting, alphabetical (PgBouncer's SHOW CONFIG
// order). Facts (name, type, default, reload) are PgBouncer 1.25's src/main.c; the support column
// is ringbouncer's and is the one place to change when a feature lands.
// =============================================================================================

constexpr Support kYes = Support::kSupported;
constexpr Support kIgnored = Support::kIgnored;
constexpr Support kNotYet = Support::kNotYet;
constexpr bool kReload = true;    // RELOAD and SET can change it
constexpr bool kRestart = false;  // PgBouncer's CF_NO_RELOAD: read at start only
constexpr int64_t kIntMax = INT_MAX;

constexpr EnumChoice kPoolModes[] = {
    {"session", static_cast<int>(PoolMode::kSession), kYes},
    {"transaction", static_cast<int>(PoolMode::kTransaction), kYes},
    {"statement", static_cast<int>(PoolMode::kStatement), kYes},
};
// PgBouncer's auth_type_map order. ldap and pam exist only in PgBouncer builds with them.
constexpr EnumChoice kAuthTypes[] = {
    {"any", static_cast<int>(AuthType::kAny), kYes},
    {"trust", static_cast<int>(AuthType::kTrust), kYes},
    {"plain", static_cast<int>(AuthType::kPlain), kYes},
    {"md5", static_cast<int>(AuthType::kMd5), kYes},
    {"cert", static_cast<int>(AuthType::kCert), kNotYet},  // needs client TLS
    {"hba", static_cast<int>(AuthType::kHba), kYes},
    {"ldap", static_cast<int>(AuthType::kLdap), kNotYet},
    {"pam", static_cast<int>(AuthType::kPam), kNotYet},
    {"scram-sha-256", static_cast<int>(AuthType::kScramSha256), kYes},
};
constexpr EnumChoice kSslModes[] = {
    {"disable", static_cast<int>(SslMode::kDisable), kYes},
    {"allow", static_cast<int>(SslMode::kAllow), kYes},
    {"prefer", static_cast<int>(SslMode::kPrefer), kYes},
    {"require", static_cast<int>(SslMode::kRequire), kYes},
    {"verify-ca", static_cast<int>(SslMode::kVerifyCa), kYes},
    {"verify-full", static_cast<int>(SslMode::kVerifyFull), kYes},
};
constexpr EnumChoice kLoadBalanceHosts[] = {
    {"round-robin", static_cast<int>(LoadBalanceHosts::kRoundRobin), kYes},
    {"disable", static_cast<int>(LoadBalanceHosts::kDisable), kYes},
};
constexpr EnumChoice kTargetSessionAttrs[] = {
    {"any", static_cast<int>(TargetSessionAttrs::kAny), kYes},
    {"read-write", static_cast<int>(TargetSessionAttrs::kReadWrite), kYes},
    {"read-only", static_cast<int>(TargetSessionAttrs::kReadOnly), kYes},
    {"primary", static_cast<int>(TargetSessionAttrs::kPrimary), kYes},
    {"standby", static_cast<int>(TargetSessionAttrs::kStandby), kYes},
};

SettingDef Row(std::string_view name, SettingType type, SettingField field, const char* def,
               bool reload, Support support, std::string_view note = {}) {
  return SettingDef{name, type, def, reload, support, Origin::kPgBouncer, 0, 0, {}, note, field};
}
SettingDef Int(std::string_view name, int Settings::*f, const char* def, bool reload,
               Support support, int64_t min = 0, int64_t max = kIntMax, std::string_view note = {}) {
  SettingDef d = Row(name, SettingType::kInt, f, def, reload, support, note);
  d.min = min;
  d.max = max;
  return d;
}
SettingDef Bool(std::string_view name, bool Settings::*f, const char* def, bool reload,
                Support support, std::string_view note = {}) {
  return Row(name, SettingType::kBool, f, def, reload, support, note);
}
SettingDef Time(std::string_view name, absl::Duration Settings::*f, const char* def, bool reload,
                Support support, std::string_view note = {}) {
  return Row(name, SettingType::kTime, f, def, reload, support, note);
}
SettingDef Str(std::string_view name, std::string Settings::*f, const char* def, bool reload,
               Support support, std::string_view note = {}) {
  return Row(name, SettingType::kString, f, def, reload, support, note);
}
SettingDef List(std::string_view name, std::vector<std::string> Settings::*f, const char* def,
                bool reload, Support support, std::string_view note = {}) {
  return Row(name, SettingType::kList, f, def, reload, support, note);
}
template <typename E>
SettingDef Enum(std::string_view name, E Settings::*f, absl::Span<const EnumChoice> choices,
                const char* def, bool reload, Support support, std::string_view note = {}) {
  SettingDef d = Row(name, SettingType::kEnum, f, def, reload, support, note);
  d.choices = choices;
  return d;
}
SettingDef Own(SettingDef d) {
  d.origin = Origin::kRingbouncer;
  return d;
}

const std::vector<SettingDef>& Table() {
  using S = Settings;
  static const auto* const kTable = new std::vector<SettingDef>{
      List("admin_users", &S::admin_users, "", kReload, kYes),
      Bool("application_name_add_host", &S::application_name_add_host, "0", kReload, kYes),
      Str("auth_dbname", &S::auth_dbname, nullptr, kReload, kNotYet, "auth_query support"),
      Str("auth_file", &S::auth_file, nullptr, kReload, kYes),
      Str("auth_hba_file", &S::auth_hba_file, "", kReload, kYes),
      Str("auth_ident_file", &S::auth_ident_file, nullptr, kReload, kNotYet, "user name maps"),
      Str("auth_ldap_options", &S::auth_ldap_options, nullptr, kReload, kNotYet, "LDAP"),
      Str("auth_query", &S::auth_query,
          "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM "
          "pg_authid WHERE rolname=$1 AND rolcanlogin",
          kReload, kNotYet, "auth_query support"),
      Enum("auth_type", &S::auth_type, kAuthTypes, "md5", kReload, kYes,
           "cert, ldap and pam are not supported yet"),
      Str("auth_user", &S::auth_user, nullptr, kReload, kNotYet, "auth_query support"),
      Time("autodb_idle_timeout", &S::autodb_idle_timeout, "3600", kReload, kNotYet, "auto-database pools are kept"),
      Time("cancel_wait_timeout", &S::cancel_wait_timeout, "10", kReload, kYes),
      Time("client_idle_timeout", &S::client_idle_timeout, "0", kReload, kYes),
      Time("client_login_timeout", &S::client_login_timeout, "60", kReload, kYes),
      Str("client_tls13_ciphers", &S::client_tls13_ciphers, nullptr, kReload, kNotYet, "TLS"),
      Str("client_tls_ca_file", &S::client_tls_ca_file, "", kReload, kNotYet, "TLS"),
      Str("client_tls_cert_file", &S::client_tls_cert_file, "", kReload, kNotYet, "TLS"),
      Str("client_tls_ciphers", &S::client_tls_ciphers, "default", kReload, kNotYet, "TLS"),
      Str("client_tls_dheparams", &S::client_tls_dheparams, "auto", kReload, kNotYet, "TLS"),
      Str("client_tls_ecdhcurve", &S::client_tls_ecdhcurve, "auto", kReload, kNotYet, "TLS"),
      Str("client_tls_key_file", &S::client_tls_key_file, "", kReload, kNotYet, "TLS"),
      Str("client_tls_protocols", &S::client_tls_protocols, "secure", kReload, kNotYet, "TLS"),
      Enum("client_tls_sslmode", &S::client_tls_sslmode, kSslModes, "disable", kReload, kNotYet,
           "TLS"),
      Str("conffile", &S::conffile, nullptr, kReload, kYes, "defaults to the file given at start"),
      Int("default_pool_size", &S::default_pool_size, "20", kReload, kYes),
      Bool("disable_pqexec", &S::disable_pqexec, "0", kRestart, kNotYet),
      Time("dns_max_ttl", &S::dns_max_ttl, "15", kReload, kYes, "server host names are cached this long per worker"),
      Time("dns_nxdomain_ttl", &S::dns_nxdomain_ttl, "15", kReload, kYes),
      Time("dns_zone_check_period", &S::dns_zone_check_period, "0", kReload, kNotYet,
           "DNS caching"),
      Time("idle_transaction_timeout", &S::idle_transaction_timeout, "0", kReload, kYes),
      List("ignore_startup_parameters", &S::ignore_startup_parameters, "", kReload, kYes),
      Str("job_name", &S::job_name, "pgbouncer", kRestart, kIgnored,
          "Windows service name in PgBouncer"),
      List("listen_addr", &S::listen_addr, "", kRestart, kYes),
      Int("listen_backlog", &S::listen_backlog, "128", kRestart, kYes),
      Int("listen_port", &S::listen_port, "6432", kRestart, kYes, 1, 65535),
      Bool("log_connections", &S::log_connections, "1", kReload, kYes),
      Bool("log_disconnections", &S::log_disconnections, "1", kReload, kYes),
      Bool("log_pooler_errors", &S::log_pooler_errors, "1", kReload, kYes),
      Bool("log_stats", &S::log_stats, "1", kReload, kYes),
      Str("logfile", &S::logfile, "", kReload, kYes),
      Int("max_client_conn", &S::max_client_conn, "100", kReload, kYes),
      Int("max_db_client_connections", &S::max_db_client_connections, "0", kReload, kYes),
      Int("max_db_connections", &S::max_db_connections, "0", kReload, kYes),
      [] {  // PgBouncer's only unsigned setting
        SettingDef d = Row("max_packet_size", SettingType::kInt, &S::max_packet_size,
                           "2147483647", kReload, kYes);
        d.max = 4294967295LL;
        return d;
      }(),
      Int("max_prepared_statements", &S::max_prepared_statements, "200", kReload, kNotYet, 0,
          kIntMax, "prepared statements in transaction mode"),
      Int("max_user_client_connections", &S::max_user_client_connections, "0", kReload, kYes),
      Int("max_user_connections", &S::max_user_connections, "0", kReload, kYes),
      Own(Str("metrics_listen", &S::metrics_listen, "", kRestart, kYes,
              "host:port for Prometheus metrics over HTTP (GET /metrics), e.g. 127.0.0.1:9127; empty: off")),
      Int("min_pool_size", &S::min_pool_size, "0", kReload, kYes),
      Int("peer_id", &S::peer_id, "0", kReload, kYes, 0, 16383, "encoded in cancel keys; cancels for other peers are forwarded, at most 3 hops"),
      Str("pidfile", &S::pidfile, "", kRestart, kYes),
      Int("pkt_buf", &S::pkt_buf, "4096", kRestart, kIgnored, 0, kIntMax,
          "buffers come from the io_uring buffer rings"),
      Enum("pool_mode", &S::pool_mode, kPoolModes, "session", kReload, kYes),
      Time("query_timeout", &S::query_timeout, "0", kReload, kYes),
      Int("query_wait_notify", &S::query_wait_notify, "5", kReload, kYes, 0, kIntMax, "seconds"),
      Time("query_wait_timeout", &S::query_wait_timeout, "120", kReload, kYes),
      Int("reserve_pool_size", &S::reserve_pool_size, "0", kReload, kYes),
      Time("reserve_pool_timeout", &S::reserve_pool_timeout, "5", kReload, kYes),
      Str("resolv_conf", &S::resolv_conf, "", kRestart, kNotYet, "DNS"),
      Int("sbuf_loopcnt", &S::sbuf_loopcnt, "5", kReload, kIgnored, 0, kIntMax,
          "fairness comes from the completion queue"),
      Int("scram_iterations", &S::scram_iterations, "4096", kReload, kNotYet, 1, kIntMax, "secrets made from plain-text passwords use 4096"),
      Time("server_check_delay", &S::server_check_delay, "30", kReload, kYes),
      Str("server_check_query", &S::server_check_query, "<empty>", kReload, kYes),
      Time("server_connect_timeout", &S::server_connect_timeout, "15", kReload, kYes),
      Bool("server_fast_close", &S::server_fast_close, "0", kReload, kNotYet),
      Time("server_idle_timeout", &S::server_idle_timeout, "600", kReload, kYes),
      Time("server_lifetime", &S::server_lifetime, "3600", kReload, kYes),
      Time("server_login_retry", &S::server_login_retry, "15", kReload, kYes),
      Str("server_reset_query", &S::server_reset_query, "DISCARD ALL", kReload, kYes),
      Bool("server_reset_query_always", &S::server_reset_query_always, "0", kReload, kYes),
      Bool("server_round_robin", &S::server_round_robin, "0", kReload, kYes),
      Str("server_tls13_ciphers", &S::server_tls13_ciphers, nullptr, kReload, kNotYet, "TLS"),
      Str("server_tls_ca_file", &S::server_tls_ca_file, "", kReload, kNotYet, "TLS"),
      Str("server_tls_cert_file", &S::server_tls_cert_file, "", kReload, kNotYet, "TLS"),
      Str("server_tls_ciphers", &S::server_tls_ciphers, "default", kReload, kNotYet, "TLS"),
      Str("server_tls_key_file", &S::server_tls_key_file, "", kReload, kNotYet, "TLS"),
      Str("server_tls_protocols", &S::server_tls_protocols, "secure", kReload, kNotYet, "TLS"),
      Enum("server_tls_sslmode", &S::server_tls_sslmode, kSslModes, "prefer", kReload, kNotYet,
           "TLS; server connections are plain until it lands"),
      Bool("so_reuseport", &S::so_reuseport, "0", kRestart, kYes,
           "workers always use SO_REUSEPORT among themselves"),
      Int("stats_period", &S::stats_period, "60", kReload, kYes, 1, kIntMax, "seconds"),
      List("stats_users", &S::stats_users, "", kReload, kYes),
      Time("suspend_timeout", &S::suspend_timeout, "10", kReload, kYes),
      Bool("syslog", &S::syslog, "0", kReload, kYes),
      Str("syslog_facility", &S::syslog_facility, "daemon", kReload, kYes),
      Str("syslog_ident", &S::syslog_ident, "pgbouncer", kReload, kYes),
      Bool("tcp_defer_accept", &S::tcp_defer_accept, "1", kReload, kYes),
      Bool("tcp_keepalive", &S::tcp_keepalive, "1", kReload, kYes),
      Int("tcp_keepcnt", &S::tcp_keepcnt, "0", kReload, kYes),
      Int("tcp_keepidle", &S::tcp_keepidle, "0", kReload, kYes, 0, kIntMax, "seconds"),
      Int("tcp_keepintvl", &S::tcp_keepintvl, "0", kReload, kYes, 0, kIntMax, "seconds"),
      Int("tcp_socket_buffer", &S::tcp_socket_buffer, "0", kReload, kYes),
      Int("tcp_user_timeout", &S::tcp_user_timeout, "0", kReload, kYes, 0, kIntMax,
          "milliseconds"),
      List("track_extra_parameters", &S::track_extra_parameters, "IntervalStyle", kRestart, kYes),
      Time("transaction_timeout", &S::transaction_timeout, "0", kReload, kNotYet),
      Str("unix_socket_dir", &S::unix_socket_dir, "/tmp", kRestart, kYes),
      Str("unix_socket_group", &S::unix_socket_group, "", kRestart, kYes),
      [] {
        SettingDef d = Int("unix_socket_mode", &S::unix_socket_mode, "0777", kRestart, kYes, 0,
                           07777, "read like C: 0777 is octal, 777 is decimal");
        d.type = SettingType::kFileMode;
        return d;
      }(),
      Str("user", &S::user, nullptr, kRestart, kYes),
      Int("verbose", &S::verbose, nullptr, kReload, kYes, 0, kIntMax),
      // ringbouncer's own settings. Add new ones here, in alphabetical order with the rest.
      Own(Int("workers", &S::workers, "0", kRestart, kYes, 0, 1024,
              "worker threads; 0 means one per online CPU")),
  };
  return *kTable;
}

// ---------------------------------------------------------------------------------------------
// Value parsing, by PgBouncer's rules.

// strtol(text, &end, 0) with PgBouncer's "whole string" check: decimal, 0x hex, leading-0 octal.
std::optional<int64_t> ParseCInteger(std::string_view text) {
  bool negative = false;
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  int base = 10;
  if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  } else if (text.size() >= 2 && text[0] == '0') {
    base = 8;
    text.remove_prefix(1);
  }
  if (text.empty()) return std::nullopt;
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), magnitude, base);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  if (magnitude > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  const int64_t v = static_cast<int64_t>(magnitude);
  return negative ? -v : v;
}

// Seconds as a non-negative decimal number, like libusual's parse_time (strtod, no units).
std::optional<double> ParseSeconds(std::string_view text) {
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  if (text.empty()) return std::nullopt;
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

// Largest accepted time: far beyond any sensible timeout, small enough for int64 microseconds.
constexpr double kMaxSeconds = 1e12;

absl::StatusOr<absl::Duration> ParseDuration(std::string_view text, std::string_view what) {
  std::optional<double> v = ParseSeconds(text);
  if (!v) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "invalid value \"%s\" for \"%s\": expected a number of seconds, such as 30 or 0.5",
        std::string(text), std::string(what)));
  }
  if (*v < 0 || *v > kMaxSeconds) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "invalid value \"%s\" for \"%s\": must be between 0 and %g seconds", std::string(text),
        std::string(what), kMaxSeconds));
  }
  // PgBouncer keeps microseconds, truncating.
  return absl::Microseconds(static_cast<int64_t>(*v * 1e6));
}

std::optional<bool> ParseBool(std::string_view text) {
  if (std::optional<int64_t> v = ParseCInteger(text)) return *v != 0;
  for (std::string_view yes : {"yes", "on", "true"}) {
    if (absl::EqualsIgnoreCase(AV(text), AV(yes))) return true;
  }
  for (std::string_view no : {"no", "off", "false"}) {
    if (absl::EqualsIgnoreCase(AV(text), AV(no))) return false;
  }
  return std::nullopt;
}

std::vector<std::string> ParseList(std::string_view text) {
  std::vector<std::string> out;
  for (absl::string_view item : absl::StrSplit(AV(text), ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (!item.empty()) out.emplace_back(item);
  }
  return out;
}

const EnumChoice* FindChoice(absl::Span<const EnumChoice> choices, std::string_view text) {
  for (const EnumChoice& c : choices) {
    if (absl::EqualsIgnoreCase(AV(c.name), AV(text))) return &c;
  }
  return nullptr;
}

std::string ChoiceList(absl::Span<const EnumChoice> choices) {
  std::vector<std::string_view> names;
  for (const EnumChoice& c : choices) names.push_back(c.name);
  return absl::StrJoin(names, ", ", [](std::string* out, std::string_view n) {
    out->append(n.data(), n.size());
  });
}

std::string_view ChoiceName(absl::Span<const EnumChoice> choices, int value) {
  for (const EnumChoice& c : choices) {
    if (c.value == value) return c.name;
  }
  return "INVALID";
}

absl::Status InvalidValue(const SettingDef& def, std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat("invalid value \"%s\" for \"%s\": %s",
                                                    std::string(text), std::string(def.name),
                                                    std::string(why)));
}

std::string FormatSeconds(absl::Duration d) {
  return absl::StrFormat("%g", absl::ToDoubleSeconds(d));
}

// Warnings that depend on the value rather than the setting (the loader adds file:line).
std::optional<std::string> ValueWarning(const SettingDef& def, std::string_view text) {
  if (def.type == SettingType::kEnum) {
    const EnumChoice* c = FindChoice(def.choices, text);
    if (c != nullptr && c->support == Support::kNotYet && def.support == Support::kSupported) {
      return absl::StrFormat("%s = %s is not supported yet by ringbouncer; clients will be refused",
                             std::string(def.name), std::string(c->name));
    }
  }
  if (def.type == SettingType::kFileMode && !text.empty() && text[0] != '0') {
    std::optional<int64_t> v = ParseCInteger(text);
    if (v && *v != 0) {
      return absl::StrFormat(
          "%s = %s is read as a decimal number (octal %04o), as in PgBouncer; write a leading 0 "
          "for octal",
          std::string(def.name), std::string(text), static_cast<int>(*v));
    }
  }
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Enum names.

std::string_view PoolModeName(PoolMode v) { return ChoiceName(kPoolModes, static_cast<int>(v)); }
std::string_view AuthTypeName(AuthType v) { return ChoiceName(kAuthTypes, static_cast<int>(v)); }
std::string_view SslModeName(SslMode v) { return ChoiceName(kSslModes, static_cast<int>(v)); }
std::string_view LoadBalanceHostsName(LoadBalanceHosts v) {
  return ChoiceName(kLoadBalanceHosts, static_cast<int>(v));
}
std::string_view TargetSessionAttrsName(TargetSessionAttrs v) {
  return ChoiceName(kTargetSessionAttrs, static_cast<int>(v));
}

int Settings::EffectiveWorkers() const {
  if (workers > 0) return workers;
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > 0 ? static_cast<int>(std::min<long>(cpus, 1024)) : 1;
}

// ---------------------------------------------------------------------------------------------
// Table access.

absl::Span<const SettingDef> AllSettings() { return Table(); }

const SettingDef* FindSetting(std::string_view name) {
  static const auto* const kIndex = [] {
    auto* index = new absl::flat_hash_map<std::string, size_t>();
    for (size_t i = 0; i < Table().size(); ++i) index->emplace(Table()[i].name, i);
    return index;
  }();
  auto it = kIndex->find(AV(name));
  return it == kIndex->end() ? nullptr : &Table()[it->second];
}

size_t SettingIndex(const SettingDef& def) { return static_cast<size_t>(&def - Table().data()); }

std::string GetSettingValue(const Settings& settings, const SettingDef& def) {
  return std::visit(
      [&](auto member) -> std::string {
        const auto& v = settings.*member;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          return v ? "1" : "0";
        } else if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
          if (def.type == SettingType::kFileMode) return absl::StrFormat("%04o", v);
          return absl::StrCat(v);
        } else if constexpr (std::is_same_v<T, absl::Duration>) {
          return FormatSeconds(v);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return v;
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          return absl::StrJoin(v, ",");
        } else {
          static_assert(std::is_enum_v<T>);
          return std::string(ChoiceName(def.choices, static_cast<int>(v)));
        }
      },
      def.field);
}

std::vector<ShowConfigRow> ShowConfigRows(const Settings& settings) {
  std::vector<ShowConfigRow> rows;
  rows.reserve(AllSettings().size());
  for (const SettingDef& def : AllSettings()) {
    ShowConfigRow row{std::string(def.name), GetSettingValue(settings, def), std::nullopt,
                      def.reload};
    if (def.default_text != nullptr) row.default_value = def.default_text;
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::Status SetSettingValue(Settings& settings, const SettingDef& def, std::string_view text) {
  return std::visit(
      [&](auto member) -> absl::Status {
        auto& v = settings.*member;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          std::optional<bool> b = ParseBool(text);
          if (!b) return InvalidValue(def, text, "expected 0 or 1 (or yes/no, on/off, true/false)");
          v = *b;
        } else if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
          std::optional<int64_t> n = ParseCInteger(text);
          if (def.type == SettingType::kFileMode) {
            if (!n || *n < def.min || *n > def.max) {
              return InvalidValue(def, text, "expected a file mode such as 0777");
            }
          } else {
            if (!n) return InvalidValue(def, text, "expected an integer");
            if (*n < def.min || *n > def.max) {
              return InvalidValue(def, text,
                                  absl::StrFormat("must be between %d and %d", def.min, def.max));
            }
          }
          v = static_cast<T>(*n);
        } else if constexpr (std::is_same_v<T, absl::Duration>) {
          absl::StatusOr<absl::Duration> d = ParseDuration(text, def.name);
          if (!d.ok()) return d.status();
          v = *d;
        } else if constexpr (std::is_same_v<T, std::string>) {
          v = std::string(text);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          v = ParseList(text);
        } else {
          static_assert(std::is_enum_v<T>);
          const EnumChoice* c = FindChoice(def.choices, text);
          if (c == nullptr) {
            return InvalidValue(def, text, "expected one of " + ChoiceList(def.choices));
          }
          v = static_cast<T>(c->value);
        }
        return absl::OkStatus();
      },
      def.field);
}

absl::Status SetSettingAtRuntime(Settings& settings, std::string_view name, std::string_view value) {
  const SettingDef* def = FindSetting(name);
  if (def == nullptr) {
    return absl::NotFoundError(absl::StrFormat("unknown setting \"%s\"", std::string(name)));
  }
  if (!def->reload) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "\"%s\" cannot be changed while running; change the file and restart",
        std::string(def->name)));
  }
  return SetSettingValue(settings, *def, value);
}

std::vector<std::string> KeepNonReloadable(const Settings& running, Settings& next) {
  std::vector<std::string> changed;
  for (const SettingDef& def : AllSettings()) {
    if (def.reload) continue;
    if (GetSettingValue(running, def) != GetSettingValue(next, def)) {
      changed.emplace_back(def.name);
    }
    std::visit([&](auto member) { next.*member = running.*member; }, def.field);
  }
  return changed;
}

Settings DefaultSettings() {
  Settings s;
  for (const SettingDef& def : AllSettings()) {
    if (def.default_text == nullptr) continue;
    absl::Status status = SetSettingValue(s, def, def.default_text);
    (void)status;  // the table's defaults parse; config tests check every one
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// [databases], [users], [peers] entries.

namespace {

absl::StatusOr<int> ParseCount(std::string_view key, std::string_view text) {
  std::optional<int64_t> n = ParseCInteger(text);
  if (!n || *n < 0 || *n > kIntMax) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "invalid value \"%s\" for %s: expected a non-negative integer", std::string(text),
        std::string(key)));
  }
  return static_cast<int>(*n);
}

absl::StatusOr<int> ParsePort(std::string_view text) {
  std::optional<int64_t> n = ParseCInteger(text);
  if (!n || *n < 1 || *n > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat("invalid port \"%s\"", std::string(text)));
  }
  return static_cast<int>(*n);
}

}  // namespace

absl::Status ParseHostPort(std::string_view text, std::string* host, int* port) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrFormat(
        "invalid address \"%s\": expected host:port, such as 127.0.0.1:9127, *:9127 or [::1]:9127",
        std::string(text)));
  };
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad();
  std::string_view h = text.substr(0, colon);
  if (h.front() == '[') {
    if (h.size() < 3 || h.back() != ']') return bad();
    h = h.substr(1, h.size() - 2);
  } else if (h.find(':') != std::string_view::npos) {
    return bad();  // an IPv6 address needs its brackets
  }
  if (h.empty() || h.find_first_of(" \t[]") != std::string_view::npos) return bad();
  absl::StatusOr<int> p = ParsePort(text.substr(colon + 1));
  if (!p.ok()) return bad();
  *host = std::string(h);
  *port = *p;
  return absl::OkStatus();
}

namespace {

template <typename E>
absl::StatusOr<E> ParseChoice(std::string_view key, std::string_view text,
                              absl::Span<const EnumChoice> choices) {
  const EnumChoice* c = FindChoice(choices, text);
  if (c == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat("invalid value \"%s\" for %s: expected one of %s",
                                                      std::string(text), std::string(key),
                                                      ChoiceList(choices)));
  }
  return static_cast<E>(c->value);
}

absl::StatusOr<absl::Duration> ParseEntryDuration(std::string_view key, std::string_view text) {
  std::optional<double> v = ParseSeconds(text);
  if (!v || *v < 0 || *v > kMaxSeconds) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "invalid value \"%s\" for %s: expected a number of seconds, such as 30 or 0.5",
        std::string(text), std::string(key)));
  }
  return absl::Microseconds(static_cast<int64_t>(*v * 1e6));
}

// Assigns a parsed value or returns its error from the enclosing function.
#define RB_ASSIGN_OR_RETURN(lhs, expr)      \
  do {                                      \
    auto rb_result_ = (expr);               \
    if (!rb_result_.ok()) return rb_result_.status(); \
    lhs = *std::move(rb_result_);           \
  } while (0)

}  // namespace

int DatabaseConfig::PortFor(size_t host_index) const {
  if (ports.empty()) return 5432;
  return host_index < ports.size() ? ports[host_index] : ports[0];
}

absl::StatusOr<DatabaseConfig> ParseDatabaseEntry(std::string_view name, std::string_view connstr) {
  DatabaseConfig db;
  db.name = std::string(name);
  db.connstr = std::string(connstr);
  if (name != "*") db.dbname = db.name;
  absl::StatusOr<std::vector<ConnParam>> params = ParseConnString(connstr);
  if (!params.ok()) return params.status();
  for (const auto& [key, value] : *params) {
    if (key == "dbname") {
      db.dbname = value;
    } else if (key == "host") {
      db.hosts.clear();
      for (absl::string_view h : absl::StrSplit(AV(value), ',')) {
        h = absl::StripAsciiWhitespace(h);
        if (h.empty()) {
          return absl::InvalidArgumentError(
              absl::StrFormat("empty entry in host list \"%s\"", value));
        }
        db.hosts.emplace_back(h);
      }
    } else if (key == "port") {
      db.ports.clear();
      for (absl::string_view p : absl::StrSplit(AV(value), ',')) {
        int port = 0;
        RB_ASSIGN_OR_RETURN(port, ParsePort(std::string_view(p.data(), p.size())));
        db.ports.push_back(port);
      }
    } else if (key == "user") {
      db.user = value;
    } else if (key == "password") {
      db.password = value;
    } else if (key == "auth_user") {
      db.auth_user = value;
    } else if (key == "auth_query") {
      db.auth_query = value;
    } else if (key == "auth_dbname") {
      db.auth_dbname = value;
    } else if (key == "pool_size") {
      RB_ASSIGN_OR_RETURN(db.pool_size, ParseCount(key, value));
    } else if (key == "min_pool_size") {
      RB_ASSIGN_OR_RETURN(db.min_pool_size, ParseCount(key, value));
    } else if (key == "reserve_pool_size" || key == "reserve_pool") {  // reserve_pool: old name
      RB_ASSIGN_OR_RETURN(db.reserve_pool_size, ParseCount(key, value));
    } else if (key == "max_db_connections") {
      RB_ASSIGN_OR_RETURN(db.max_db_connections, ParseCount(key, value));
    } else if (key == "max_db_client_connections") {
      RB_ASSIGN_OR_RETURN(db.max_db_client_connections, ParseCount(key, value));
    } else if (key == "pool_mode") {
      RB_ASSIGN_OR_RETURN(db.pool_mode, ParseChoice<PoolMode>(key, value, kPoolModes));
    } else if (key == "connect_query") {
      db.connect_query = value;
    } else if (key == "client_encoding") {
      db.client_encoding = value;
    } else if (key == "datestyle") {
      db.datestyle = value;
    } else if (key == "timezone") {
      db.timezone = value;
    } else if (key == "application_name") {
      db.application_name = value;
    } else if (key == "server_lifetime") {
      RB_ASSIGN_OR_RETURN(db.server_lifetime, ParseEntryDuration(key, value));
    } else if (key == "query_wait_timeout") {
      // -1 means "not set" (use the user's or the global value), as in PgBouncer.
      if (value == "-1") {
        db.query_wait_timeout.reset();
      } else {
        RB_ASSIGN_OR_RETURN(db.query_wait_timeout, ParseEntryDuration(key, value));
      }
    } else if (key == "load_balance_hosts") {
      RB_ASSIGN_OR_RETURN(db.load_balance_hosts,
                          ParseChoice<LoadBalanceHosts>(key, value, kLoadBalanceHosts));
    } else if (key == "target_session_attrs") {
      RB_ASSIGN_OR_RETURN(db.target_session_attrs,
                          ParseChoice<TargetSessionAttrs>(key, value, kTargetSessionAttrs));
    } else {
      return absl::InvalidArgumentError(absl::StrFormat("unknown parameter \"%s\"", key));
    }
  }
  if (db.ports.size() > 1 && db.ports.size() != db.hosts.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "port lists %d ports but host lists %d hosts; give one port, or one per host",
        db.ports.size(), db.hosts.size()));
  }
  return db;
}

absl::StatusOr<UserConfig> ParseUserEntry(std::string_view name, std::string_view value_text) {
  UserConfig user;
  user.name = std::string(name);
  absl::StatusOr<std::vector<ConnParam>> params = ParseConnString(value_text);
  if (!params.ok()) return params.status();
  for (const auto& [key, value] : *params) {
    if (key == "pool_mode") {
      RB_ASSIGN_OR_RETURN(user.pool_mode, ParseChoice<PoolMode>(key, value, kPoolModes));
    } else if (key == "pool_size") {
      RB_ASSIGN_OR_RETURN(user.pool_size, ParseCount(key, value));
    } else if (key == "reserve_pool_size") {
      RB_ASSIGN_OR_RETURN(user.reserve_pool_size, ParseCount(key, value));
    } else if (key == "max_user_connections") {
      RB_ASSIGN_OR_RETURN(user.max_user_connections, ParseCount(key, value));
    } else if (key == "max_user_client_connections") {
      RB_ASSIGN_OR_RETURN(user.max_user_client_connections, ParseCount(key, value));
    } else if (key == "query_timeout") {
      RB_ASSIGN_OR_RETURN(user.query_timeout, ParseEntryDuration(key, value));
    } else if (key == "query_wait_timeout") {
      if (value == "-1") {
        user.query_wait_timeout.reset();
      } else {
        RB_ASSIGN_OR_RETURN(user.query_wait_timeout, ParseEntryDuration(key, value));
      }
    } else if (key == "idle_transaction_timeout") {
      RB_ASSIGN_OR_RETURN(user.idle_transaction_timeout, ParseEntryDuration(key, value));
    } else if (key == "transaction_timeout") {
      RB_ASSIGN_OR_RETURN(user.transaction_timeout, ParseEntryDuration(key, value));
    } else if (key == "client_idle_timeout") {
      RB_ASSIGN_OR_RETURN(user.client_idle_timeout, ParseEntryDuration(key, value));
    } else {
      return absl::InvalidArgumentError(absl::StrFormat("unknown parameter \"%s\"", key));
    }
  }
  return user;
}

absl::StatusOr<PeerConfig> ParsePeerEntry(std::string_view id, std::string_view connstr) {
  PeerConfig peer;
  // PgBouncer reads the id with strtonum(1, 65535): decimal digits only.
  int64_t n = 0;
  auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), n, 10);
  if (id.empty() || ec != std::errc() || end != id.data() + id.size() || n < 1 || n > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("peer id \"%s\" must be a number from 1 to 65535", std::string(id)));
  }
  peer.peer_id = static_cast<int>(n);
  absl::StatusOr<std::vector<ConnParam>> params = ParseConnString(connstr);
  if (!params.ok()) return params.status();
  bool have_host = false;
  for (const auto& [key, value] : *params) {
    if (key == "host") {
      peer.host = value;
      have_host = true;
    } else if (key == "port") {
      RB_ASSIGN_OR_RETURN(peer.port, ParsePort(value));
    } else if (key == "pool_size") {
      RB_ASSIGN_OR_RETURN(peer.pool_size, ParseCount(key, value));
    } else {
      return absl::InvalidArgumentError(absl::StrFormat("unknown parameter \"%s\"", key));
    }
  }
  if (!have_host) return absl::InvalidArgumentError("host is missing");
  return peer;
}

#undef RB_ASSIGN_OR_RETURN

const DatabaseConfig* Config::FindDatabase(std::string_view name) const {
  auto it = database_index.find(AV(name));
  return it == database_index.end() ? nullptr : &databases[it->second];
}

const UserConfig* Config::FindUser(std::string_view name) const {
  auto it = user_index.find(AV(name));
  return it == user_index.end() ? nullptr : &users[it->second];
}

const PeerConfig* Config::FindPeer(int peer_id) const {
  auto it = peer_index.find(peer_id);
  return it == peer_index.end() ? nullptr : &peers[it->second];
}

// ---------------------------------------------------------------------------------------------
// The loader.

namespace {

constexpr int kMaxIncludeDepth = 10;  // libusual's MAX_INCLUDE

class Loader {
 public:
  explicit Loader(const LoadOptions& options)
      : options_(options), set_line_(AllSettings().size(), 0) {
    config_.settings = DefaultSettings();
  }

  LoadResult Run(std::string_view text, const std::string& file_name, const std::string& identity) {
    main_file_ = file_name;
    if (!identity.empty()) include_stack_.push_back(identity);
    ProcessText(text, file_name, 0);
    Finish();
    LoadResult result;
    result.warnings = std::move(warnings_);
    result.errors = std::move(errors_);
    if (result.errors.empty()) {
      result.config = std::move(config_);
    } else {
      std::vector<std::string> lines;
      for (const Diagnostic& d : result.errors) lines.push_back(d.ToString());
      result.config = absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
    }
    return result;
  }

 private:
  enum class Section { kNone, kPgBouncer, kDatabases, kUsers, kPeers, kUnknown };

  void Error(const std::string& file, int line, std::string message) {
    errors_.push_back(Diagnostic{file, line, std::move(message)});
  }
  void Warn(const std::string& file, int line, std::string message) {
    warnings_.push_back(Diagnostic{file, line, std::move(message)});
  }

  void ProcessText(std::string_view text, const std::string& file, int depth) {
    IniParseResult parsed = ParseIni(text, file);
    for (Diagnostic& d : parsed.errors) errors_.push_back(std::move(d));
    for (const IniItem& item : parsed.items) {
      switch (item.kind) {
        case IniItem::Kind::kInclude:
          Include(item, file, depth);
          break;
        case IniItem::Kind::kSection:
          EnterSection(item, file);
          break;
        case IniItem::Kind::kKeyValue:
          KeyValue(item, file);
          break;
      }
    }
  }

  // %include: PgBouncer resolves a relative name against its working directory, not against the
  // including file, and allows 10 levels. We also catch loops, which PgBouncer reports only as
  // nesting too deep.
  void Include(const IniItem& item, const std::string& file, int depth) {
    const std::string& written = item.value;
    if (depth + 1 > kMaxIncludeDepth) {
      Error(file, item.line,
            absl::StrFormat("%%include \"%s\": nesting is deeper than %d files", written,
                            kMaxIncludeDepth));
      return;
    }
    const std::string resolved = ResolvePath(written, options_.working_dir);
    std::error_code ec;
    std::string identity = std::filesystem::weakly_canonical(resolved, ec).string();
    if (ec) identity = resolved;
    if (std::find(include_stack_.begin(), include_stack_.end(), identity) != include_stack_.end()) {
      Error(file, item.line,
            absl::StrFormat("%%include \"%s\": include loop, that file is already being read",
                            written));
      return;
    }
    absl::StatusOr<std::string> text = ReadTextFile(resolved);
    if (!text.ok()) {
      Error(file, item.line, absl::StrFormat("%%include: %s", text.status().message()));
      return;
    }
    include_stack_.push_back(identity);
    ProcessText(*text, written, depth + 1);
    include_stack_.pop_back();
  }

  void EnterSection(const IniItem& item, const std::string& file) {
    const std::string& name = item.key;
    if (name == "pgbouncer") {
      if (seen_pgbouncer_) ReopenPgBouncer(file, item.line);
      seen_pgbouncer_ = true;
      section_ = Section::kPgBouncer;
    } else if (name == "databases") {
      section_ = Section::kDatabases;
    } else if (name == "users") {
      section_ = Section::kUsers;
    } else if (name == "peers") {
      section_ = Section::kPeers;
    } else {
      section_ = Section::kUnknown;
      std::string hint = "expected [pgbouncer], [databases], [users] or [peers]";
      for (std::string_view known : {"pgbouncer", "databases", "users", "peers"}) {
        if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(AV(name)), AV(known))) {
          hint = absl::StrFormat("section names are case-sensitive and take no blanks: [%s]",
                                 std::string(known));
        }
      }
      Error(file, item.line, absl::StrFormat("unknown section [%s] (%s)", name, hint));
    }
  }

  // PgBouncer (libusual's fill_defaults) resets every setting that has a default each time a
  // [pgbouncer] header is read, so a second [pgbouncer] section, for example in an included file,
  // silently undoes the first one's settings. We do the same, so a file means what it meant under
  // PgBouncer, and say so.
  void ReopenPgBouncer(const std::string& file, int line) {
    std::vector<std::string> reset;
    Settings defaults = DefaultSettings();
    for (const SettingDef& def : AllSettings()) {
      const size_t i = SettingIndex(def);
      if (set_line_[i] == 0 || def.default_text == nullptr) continue;
      std::visit([&](auto member) { config_.settings.*member = defaults.*member; }, def.field);
      set_line_[i] = 0;
      reset.emplace_back(def.name);
    }
    if (!reset.empty()) {
      Warn(file, line,
           absl::StrFormat("[pgbouncer] appears again: as in PgBouncer, the earlier settings of %s "
                           "are reset to their defaults",
                           absl::StrJoin(reset, ", ")));
    }
  }

  void KeyValue(const IniItem& item, const std::string& file) {
    switch (section_) {
      case Section::kNone:
        Error(file, item.line,
              absl::StrFormat("\"%s\" is outside any section (start with [pgbouncer])", item.key));
        return;
      case Section::kUnknown:
        return;  // already reported at the section header
      case Section::kPgBouncer:
        Setting(item, file);
        return;
      case Section::kDatabases:
        Database(item, file);
        return;
      case Section::kUsers:
        User(item, file);
        return;
      case Section::kPeers:
        Peer(item, file);
        return;
    }
  }

  void Setting(const IniItem& item, const std::string& file) {
    const SettingDef* def = FindSetting(item.key);
    if (def == nullptr && item.key == "service_name") {
      // PgBouncer knows it only in Windows builds (an alias of job_name); its documentation and
      // sample config mention it, so accept it here rather than fail a start.
      Warn(file, item.line, "\"service_name\" is PgBouncer's Windows service name; ignored");
      return;
    }
    if (def == nullptr) {
      std::string hint;
      for (const SettingDef& d : AllSettings()) {
        if (absl::EqualsIgnoreCase(AV(d.name), AV(item.key))) {
          hint = absl::StrFormat(" (did you mean \"%s\"? setting names are case-sensitive)",
                                 std::string(d.name));
        }
      }
      // A warning, not an error (PgBouncer 1.23+ refuses to load): a key from a newer
      // PgBouncer, or ringbouncer's own key in a file shared with pgbouncer, must not stop
      // a start. The line names it, so a typo is still found.
      Warn(file, item.line, absl::StrFormat("unknown setting \"%s\"%s; ignored", item.key, hint));
      return;
    }
    if (absl::Status s = SetSettingValue(config_.settings, *def, item.value); !s.ok()) {
      Error(file, item.line, std::string(s.message()));
      return;
    }
    if (def->name == "metrics_listen" && !item.value.empty()) {
      std::string host;
      int port = 0;
      if (absl::Status s = ParseHostPort(item.value, &host, &port); !s.ok()) {
        Error(file, item.line, absl::StrFormat("metrics_listen: %s", s.message()));
        return;
      }
    }
    set_line_[SettingIndex(*def)] = item.line;
    if (def == FindSetting("auth_type")) {
      auth_type_file_ = file;
      auth_type_line_ = item.line;
    }
    if (def->support == Support::kNotYet) {
      Warn(file, item.line, absl::StrFormat("\"%s\" is not supported yet by ringbouncer; ignored",
                                            std::string(def->name)));
    } else if (def->support == Support::kIgnored) {
      Warn(file, item.line, absl::StrFormat("\"%s\" has no effect in ringbouncer; ignored",
                                            std::string(def->name)));
    }
    if (std::optional<std::string> w = ValueWarning(*def, item.value)) {
      Warn(file, item.line, *w);
    }
  }

  void Database(const IniItem& item, const std::string& file) {
    const std::string& name = item.key;
    if (name == "pgbouncer") {
      Error(file, item.line, "database name \"pgbouncer\" is reserved for the admin console");
      return;
    }
    absl::StatusOr<DatabaseConfig> db = ParseDatabaseEntry(name, item.value);
    if (!db.ok()) {
      Error(file, item.line, absl::StrFormat("database \"%s\": %s", name, db.status().message()));
      return;
    }
    db->file = file;
    db->line = item.line;
    if (name == "*" && !item.key_quoted) {
      config_.fallback_database = *std::move(db);
      return;
    }
    auto [it, inserted] = config_.database_index.try_emplace(name, config_.databases.size());
    if (inserted) {
      config_.databases.push_back(*std::move(db));
    } else {
      DatabaseConfig& old = config_.databases[it->second];
      Warn(file, item.line,
           absl::StrFormat("database \"%s\" is defined again (first at %s:%d); this later entry "
                           "is used",
                           name, old.file, old.line));
      old = *std::move(db);
    }
  }

  void User(const IniItem& item, const std::string& file) {
    absl::StatusOr<UserConfig> user = ParseUserEntry(item.key, item.value);
    if (!user.ok()) {
      Error(file, item.line, absl::StrFormat("user \"%s\": %s", item.key, user.status().message()));
      return;
    }
    user->file = file;
    user->line = item.line;
    auto [it, inserted] = config_.user_index.try_emplace(item.key, config_.users.size());
    if (inserted) {
      config_.users.push_back(*std::move(user));
    } else {
      UserConfig& old = config_.users[it->second];
      Warn(file, item.line,
           absl::StrFormat("user \"%s\" is defined again (first at %s:%d); this later entry is used",
                           item.key, old.file, old.line));
      old = *std::move(user);
    }
  }

  void Peer(const IniItem& item, const std::string& file) {
    absl::StatusOr<PeerConfig> peer = ParsePeerEntry(item.key, item.value);
    if (!peer.ok()) {
      Error(file, item.line, absl::StrFormat("peer \"%s\": %s", item.key, peer.status().message()));
      return;
    }
    peer->file = file;
    peer->line = item.line;
    auto [it, inserted] = config_.peer_index.try_emplace(peer->peer_id, config_.peers.size());
    if (inserted) {
      config_.peers.push_back(*std::move(peer));
    } else {
      PeerConfig& old = config_.peers[it->second];
      Warn(file, item.line,
           absl::StrFormat("peer %d is defined again (first at %s:%d); this later entry is used",
                           old.peer_id, old.file, old.line));
      old = *std::move(peer);
    }
  }

  // Checks across settings, then the files the settings name.
  void Finish() {
    Settings& s = config_.settings;
    if (!seen_pgbouncer_) {
      Error(main_file_, 0, "the [pgbouncer] section is missing");
    }
    if (set_line_[SettingIndex(*FindSetting("conffile"))] == 0) s.conffile = main_file_;

    const std::string& at_file = auth_type_file_.empty() ? main_file_ : auth_type_file_;
    if (s.auth_type == AuthType::kHba && s.auth_hba_file.empty()) {
      Error(at_file, auth_type_line_, "auth_type = hba needs auth_hba_file");
    }
    const bool needs_users = s.auth_type == AuthType::kTrust || s.auth_type == AuthType::kPlain ||
                             s.auth_type == AuthType::kMd5 ||
                             s.auth_type == AuthType::kScramSha256;
    if (needs_users && s.auth_file.empty() && s.auth_user.empty()) {
      Warn(at_file, auth_type_line_,
           absl::StrFormat("auth_type = %s, but neither auth_file nor auth_user is set, so no "
                           "user can log in",
                           std::string(AuthTypeName(s.auth_type))));
    }

    // PgBouncer reads auth_file for every auth_type from trust on, except pam.
    const bool reads_auth_file = s.auth_type != AuthType::kAny && s.auth_type != AuthType::kPam;
    if (options_.load_auth_file && reads_auth_file && !s.auth_file.empty()) {
      AuthFileResult auth = LoadAuthFile(s.auth_file, options_.working_dir);
      Append(auth.warnings, warnings_);
      Append(auth.errors, errors_);
      config_.auth_file = std::move(auth.auth_file);
    }
    if (options_.load_hba_file && s.auth_type == AuthType::kHba && !s.auth_hba_file.empty()) {
      HbaResult hba = LoadHbaFile(s.auth_hba_file, options_.working_dir);
      Append(hba.warnings, warnings_);
      Append(hba.errors, errors_);
      config_.hba = std::move(hba.rules);
    }
  }

  static void Append(std::vector<Diagnostic>& from, std::vector<Diagnostic>& to) {
    for (Diagnostic& d : from) to.push_back(std::move(d));
  }

  const LoadOptions& options_;
  Config config_;
  std::vector<Diagnostic> warnings_;
  std::vector<Diagnostic> errors_;
  std::vector<int> set_line_;  // per setting: line of its last assignment, 0 when not set
  std::vector<std::string> include_stack_;
  std::string main_file_;
  Section section_ = Section::kNone;
  bool seen_pgbouncer_ = false;
  std::string auth_type_file_;
  int auth_type_line_ = 0;
};

}  // namespace

LoadResult LoadConfigFile(const std::string& path, const LoadOptions& options) {
  const std::string resolved = ResolvePath(path, options.working_dir);
  absl::StatusOr<std::string> text = ReadTextFile(resolved);
  if (!text.ok()) {
    LoadResult result;
    result.errors.push_back(Diagnostic{path, 0, std::string(text.status().message())});
    result.config = absl::InvalidArgumentError(result.errors.back().ToString());
    return result;
  }
  std::error_code ec;
  std::string identity = std::filesystem::weakly_canonical(resolved, ec).string();
  if (ec) identity = resolved;
  return Loader(options).Run(*text, path, identity);
}

LoadResult LoadConfigText(std::string_view text, const std::string& file_name,
                          const LoadOptions& options) {
  return Loader(options).Run(text, file_name, "");
}

// ---------------------------------------------------------------------------------------------
// The README's settings section

std::string RenderSettingsMarkdown() {
  std::string out =
      "<!-- Generated from the settings table in engine/config.cc by RenderSettingsMarkdown().\n"
      "     Do not edit by hand: a unit test compares this section with the table. To regenerate:\n"
      "     RB_UPDATE_SETTINGS_MD=1 build/tests/rb_engine_tests \"[settings-md]\" -->\n"
      "\n"
      "Every PgBouncer 1.25 setting is recognised, with PgBouncer's default and value rules.\n"
      "*reload* says whether `RELOAD` (SIGHUP) and `SET` can change the setting; the others are\n"
      "read at start only, as in PgBouncer. Settings that are *not yet* supported or that have\n"
      "*no effect* are accepted, with a warning that names the setting, the file and the line.\n"
      "\n"
      "| setting | default | reload | ringbouncer | notes |\n"
      "|---|---|---|---|---|\n";
  for (const SettingDef& def : AllSettings()) {
    std::string def_text;
    if (def.default_text == nullptr) {
      def_text = "(not set)";
    } else if (*def.default_text == '\0') {
      def_text = "(empty)";
    } else {
      def_text = absl::StrCat("`", def.default_text, "`");
    }
    std::string_view support = def.support == Support::kSupported ? "supported"
                               : def.support == Support::kIgnored ? "no effect"
                                                                  : "not yet";
    std::string note(def.note);
    if (def.origin == Origin::kRingbouncer) note = absl::StrCat("ringbouncer's own. ", note);
    absl::StrAppend(&out, "| `", AV(def.name), "` | ", def_text, " | ", def.reload ? "yes" : "no",
                    " | ", AV(support), " | ", note, " |\n");
  }
  absl::StrAppend(
      &out,
      "\n"
      "### Other sections\n"
      "\n"
      "- `[databases]`: `name = key=value ...` with dbname, host (a name, an IP address, a Unix\n"
      "  socket directory starting with `/` or `@`, or a comma list), port (one, or one per host),\n"
      "  user, password, auth_user, auth_query, auth_dbname, pool_size, min_pool_size,\n"
      "  reserve_pool_size (or reserve_pool), max_db_connections, max_db_client_connections,\n"
      "  pool_mode, connect_query, client_encoding, datestyle, timezone, application_name,\n"
      "  server_lifetime, query_wait_timeout, load_balance_hosts, target_session_attrs.\n"
      "  Values may be single-quoted, with `''` for a quote. `*` is the fallback database.\n"
      "- `[users]`: `name = key=value ...` with pool_mode, pool_size, reserve_pool_size,\n"
      "  max_user_connections, max_user_client_connections, query_timeout, query_wait_timeout,\n"
      "  idle_transaction_timeout, transaction_timeout, client_idle_timeout.\n"
      "- `[peers]`: `peer_id = host=... port=... pool_size=...`.\n"
      "- `%include FILE` reads another file in place; a relative name is resolved against the\n"
      "  working directory, as in PgBouncer.\n");
  return out;
}

}  // namespace rb::engine
