// bitsweep: the command-line client of bitsweep-server. All logic lives in bitsweep_client.
#include <string>
#include <vector>

#include "client/cli.h"

int main(int argc, char** argv) {
  return bitsweep::client::RunCli(std::vector<std::string>(argv, argv + argc),
                                  bitsweep::client::DetectEnvironment());
}
