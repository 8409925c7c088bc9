// auth_hba_file: host-based access rules in PgBouncer's subset of pg_hba.conf, used when
// auth_type = hba. The first rule that matches a connection decides its authentication method; a
// connection that matches no rule is refused.
//
//   TYPE       DATABASE        USER        ADDRESS            METHOD         [OPTIONS]
//   local      all             all                            peer           map=local
//   hostssl    app,"odd db"    @staff.txt  10.0.0.0/8         scram-sha-256
//   host       replication     repl        192.168.1.0 255.255.255.0  md5
//   hostnossl  all             all         all                reject
//
// What PgBouncer 1.25 accepts, and so what this accepts:
//  - TYPE: local, host, hostssl, hostnossl.
//  - DATABASE: all, sameuser, replication, names, "quoted names", @file; comma lists.
//    samerole and samegroup are not supported. As in PostgreSQL, `all` does not cover replication
//    connections; only the `replication` keyword does. A quoted "all" is a database named all.
//  - USER: all, names, "quoted names", @file; comma lists. +group is not supported.
//  - ADDRESS (not for local): all, an IPv4 or IPv6 address with /bits, or an address followed by a
//    mask column. Host names, samehost and samenet are not supported.
//  - METHOD: trust, reject, md5, password, scram-sha-256, peer, cert, ldap.
//  - OPTIONS: map=NAME (cert, peer); name=value LDAP options (ldap).
//  - '#' starts a comment anywhere outside quotes. @file names are read relative to the directory
//    of the file that mentions them, and may hold names separated by commas or blanks.
// Like PgBouncer, a line that cannot be used is skipped with a warning (naming file and line)
// and the rest of the file still applies. ringbouncer additionally normalises IPv4-mapped IPv6
// client addresses (::ffff:a.b.c.d) to IPv4 before matching, as PostgreSQL does, so that
// dual-stack listeners match IPv4 rules.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/ini.h"

struct sockaddr;

namespace rb::engine {

enum class HbaConnType { kLocal, kHost, kHostSsl, kHostNoSsl };
enum class HbaMethod { kTrust, kReject, kMd5, kPassword, kScramSha256, kPeer, kCert, kLdap };

std::string_view HbaMethodName(HbaMethod method);  // as written in the file: "scram-sha-256", ...

// An IPv4 or IPv6 address in network byte order. IPv4 uses bytes[0..3].
struct IpAddress {
  int family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};

  static std::optional<IpAddress> Parse(std::string_view text);
  // From an accepted socket's peer address; nullopt for AF_UNIX and unknown families.
  // IPv4-mapped IPv6 addresses come back as IPv4.
  static std::optional<IpAddress> FromSockaddr(const struct sockaddr* addr);
  std::string ToString() const;
  bool operator==(const IpAddress&) const = default;
};

struct HbaNames {
  bool all = false;
  bool sameuser = false;     // database field only: the database named like the user
  bool replication = false;  // database field only: replication connections
  std::vector<std::string> names;
};

struct HbaRule {
  HbaConnType type = HbaConnType::kHost;
  HbaNames databases;
  HbaNames users;
  bool any_address = false;  // ADDRESS "all"; unused for local
  IpAddress address;         // with mask applied
  IpAddress mask;
  HbaMethod method = HbaMethod::kReject;
  std::string map;  // map= option, empty when absent
  std::vector<std::pair<std::string, std::string>> options;  // every name=value option, in order
  std::string file;
  int line = 0;
};

// A client connection to check.
struct HbaQuery {
  bool is_unix = false;         // arrived on a Unix socket: only `local` rules apply
  bool is_tls = false;          // TLS is in use: hostssl rules apply, hostnossl rules do not
  std::optional<IpAddress> address;  // TCP peer; required unless is_unix
  std::string_view database;
  std::string_view user;
  bool replication = false;     // the startup packet asked for replication
};

struct HbaMatch {
  HbaMethod method = HbaMethod::kReject;
  std::string map;
  int line = 0;  // the matching rule's line in its file
};

// The parsed rules: a plain copyable value, so it can live in a config snapshot.
struct HbaRules {
  std::string path;
  std::vector<HbaRule> rules;

  // The first matching rule's method, or nullopt when no rule matches (the caller refuses the
  // connection, as PgBouncer does).
  std::optional<HbaMatch> Lookup(const HbaQuery& query) const;
};

struct HbaResult {
  HbaRules rules;
  std::vector<Diagnostic> warnings;  // lines skipped, and methods ringbouncer cannot do yet
  std::vector<Diagnostic> errors;    // only: the file itself cannot be read
  bool ok() const { return errors.empty(); }
};

// Parses hba text. `file_name` is used in messages; @file names are resolved against `base_dir`
// (normally the directory of the hba file).
HbaResult ParseHba(std::string_view text, std::string_view file_name, std::string_view base_dir);

// Reads and parses the file. `relative_to` resolves a relative `path` (empty: the process's
// working directory, as PgBouncer).
HbaResult LoadHbaFile(const std::string& path, const std::string& relative_to = "");

}  // namespace rb::engine
