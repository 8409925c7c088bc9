// State that exists only while a connection logs in, freed once it is done, so that the
// long-lived connection structs stay small.
#pragma once

#include <sys/socket.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/auth_file.h"
#include "engine/config.h"
#include "proto/message_assembler.h"
#include "proto/scram.h"
#include "proto/startup.h"
#include "proto/wire.h"

namespace rb::engine {

enum class ClientAuthMethod : uint8_t { kTrust, kPlain, kMd5, kScram, kReject };

struct ClientLogin {
  ClientLogin() : assembler(proto::AssemblerMode::kStartup, proto::kMaxStartupPacketLength) {}

  proto::MessageAssembler assembler;
  proto::StartupPacket startup;
  std::string user;
  std::string database;
  std::string application_name;
  std::vector<std::pair<int, std::string>> tracked;  // VarCache index -> value from startup/options
  bool admin = false;                  // the virtual "pgbouncer" database
  ClientAuthMethod method = ClientAuthMethod::kTrust;
  bool user_known = false;
  std::string secret;                  // from the auth_file
  SecretKind secret_kind = SecretKind::kNone;
  std::array<uint8_t, 4> md5_salt{};
  std::unique_ptr<proto::ScramServer> scram;
  std::optional<proto::ScramPassThroughKeys> scram_keys;  // for logging in to the server
  bool ssl_refused = false;
};

struct ServerLogin {
  ServerLogin(uint32_t max_packet)
      : assembler(proto::AssemblerMode::kTyped, max_packet) {}
  proto::MessageAssembler assembler;
  std::unique_ptr<proto::ScramClient> scram;
  sockaddr_storage addr{};  // read by the kernel when the connect SQE is submitted
  socklen_t addrlen = 0;
  bool auth_ok = false;
  std::vector<std::pair<std::string, std::string>> params;  // ParameterStatus at login
};

}  // namespace rb::engine
