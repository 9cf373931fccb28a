#include "common/channel_security.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/bearer_token.h"
#include "common/status_macros.h"

namespace bitsweep::common {

absl::StatusOr<std::string> ReadPemFile(const std::string& what, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  if (!in || contents.str().empty()) {
    return absl::NotFoundError(absl::StrCat(what, ": cannot read ", path));
  }
  return contents.str();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ChannelSecurity& security) {
  if (security.tls_cert_file.empty() != security.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (security.tls_ca_file.empty()) {
    if (!security.tls_cert_file.empty()) {
      return absl::InvalidArgumentError("--tls-cert needs --tls-ca (the server's CA)");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions options;
  ASSIGN_OR_RETURN(options.pem_root_certs, ReadPemFile("--tls-ca", security.tls_ca_file));
  if (!security.tls_cert_file.empty()) {
    ASSIGN_OR_RETURN(options.pem_cert_chain, ReadPemFile("--tls-cert", security.tls_cert_file));
    ASSIGN_OR_RETURN(options.pem_private_key, ReadPemFile("--tls-key", security.tls_key_file));
  }
  return grpc::SslCredentials(options);
}

void AddBearerToken(const std::string& token, grpc::ClientContext& context) {
  if (!token.empty()) context.AddMetadata(kAuthorizationMetadataKey, BearerHeader(token));
}

}  // namespace bitsweep::common
