// The deployment files parse and say what docs/deploy.md promises: compose with a scalable
// worker and a volume for the database, Kubernetes kinds and probe ports, a Dockerfile built
// from the one package list, a Slurm script bash accepts; and every flag they pass exists.
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace bitsweep::deploy {
namespace {

namespace fs = std::filesystem;

const fs::path kSource = BITSWEEP_SOURCE_DIR;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs a shell command; returns stdout and sets the exit code. pclose reaps the child.
std::string RunCommand(const std::string& command, int* exit_code) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    *exit_code = -1;
    return "";
  }
  std::string out;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  const int status = pclose(pipe);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::vector<std::string> Strings(const YAML::Node& list) {
  std::vector<std::string> items;
  for (const YAML::Node& item : list) items.push_back(item.as<std::string>());
  return items;
}

bool Contains(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

// "--name" of every "--name" or "--name=value" argument.
std::set<std::string> FlagNames(const std::vector<std::string>& args) {
  std::set<std::string> flags;
  for (const std::string& arg : args) {
    if (arg.rfind("--", 0) == 0) flags.insert(arg.substr(0, arg.find('=')));
  }
  return flags;
}

// Flags the program's --help lists.
std::set<std::string> HelpFlags(const std::string& binary) {
  int exit_code = 0;
  const std::string help = RunCommand(binary + " --help", &exit_code);
  EXPECT_EQ(exit_code, 0) << binary << " --help";
  std::set<std::string> flags;
  static const std::regex kFlag(R"(--[a-z][a-z0-9-]*)");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), kFlag);
       it != std::sregex_iterator(); ++it) {
    flags.insert(it->str());
  }
  return flags;
}

void ExpectFlagsExist(const std::vector<std::string>& args, const std::string& binary,
                      const std::string& where) {
  const std::set<std::string> known = HelpFlags(binary);
  for (const std::string& flag : FlagNames(args)) {
    EXPECT_TRUE(known.count(flag))
        << where << " passes " << flag << ", which " << binary << " --help does not list";
  }
}

TEST(ComposeTest, HasScalableWorkerAndServerWithVolumeTokensAndHealthcheck) {
  const YAML::Node compose = YAML::LoadFile((kSource / "docker/compose.yaml").string());
  const YAML::Node server = compose["services"]["server"];
  const YAML::Node worker = compose["services"]["worker"];
  ASSERT_TRUE(server.IsMap());
  ASSERT_TRUE(worker.IsMap());

  const std::vector<std::string> server_args = Strings(server["command"]);
  EXPECT_EQ(server_args.at(0), "bitsweep-server");
  EXPECT_TRUE(Contains(server_args, "--listen=0.0.0.0:50051"));
  EXPECT_TRUE(Contains(server_args, "--http=0.0.0.0:8080"));
  EXPECT_TRUE(Contains(server_args, "--worker-token-file=/run/secrets/worker_token"));
  EXPECT_TRUE(Contains(server_args, "--client-token-file=/run/secrets/client_token"));
  EXPECT_TRUE(Contains(server_args, "--db=/var/lib/bitsweep/db/bitsweep.db"));
  EXPECT_TRUE(Contains(Strings(server["volumes"]), "server-db:/var/lib/bitsweep/db"));
  EXPECT_TRUE(compose["volumes"]["server-db"].IsDefined());
  EXPECT_TRUE(Contains(Strings(server["ports"]), "50051:50051"));
  EXPECT_TRUE(Contains(Strings(server["ports"]), "8080:8080"));
  EXPECT_TRUE(server["healthcheck"]["test"].IsSequence());

  const std::vector<std::string> worker_args = Strings(worker["command"]);
  EXPECT_EQ(worker_args.at(0), "bitsweep-worker");
  EXPECT_TRUE(Contains(worker_args, "--server=server:50051"));
  EXPECT_TRUE(Contains(worker_args, "--token-file=/run/secrets/worker_token"));
  // --scale worker=N needs containers without fixed names or host ports.
  EXPECT_FALSE(worker["container_name"].IsDefined());
  EXPECT_FALSE(worker["ports"].IsDefined());
  EXPECT_EQ(worker["depends_on"]["server"]["condition"].as<std::string>(), "service_healthy");

  for (const char* secret : {"worker_token", "client_token"}) {
    EXPECT_TRUE(compose["secrets"][secret]["file"].IsDefined()) << secret;
  }
  ExpectFlagsExist(server_args, BITSWEEP_SERVER_BIN, "compose server");
  ExpectFlagsExist(worker_args, BITSWEEP_WORKER_BIN, "compose worker");
}

// Every document of every docker/k8s/*.yaml, by kind.
std::multimap<std::string, YAML::Node> KubernetesObjects() {
  std::multimap<std::string, YAML::Node> objects;
  for (const fs::directory_entry& entry : fs::directory_iterator(kSource / "docker/k8s")) {
    if (entry.path().extension() != ".yaml") continue;
    for (const YAML::Node& document : YAML::LoadAllFromFile(entry.path().string())) {
      EXPECT_TRUE(document["apiVersion"].IsDefined()) << entry.path();
      objects.emplace(document["kind"].as<std::string>(), document);
    }
  }
  return objects;
}

TEST(KubernetesTest, ServerStatefulSetHasVolumeProbesAndService) {
  std::multimap<std::string, YAML::Node> objects = KubernetesObjects();
  ASSERT_EQ(objects.count("StatefulSet"), 1u);
  ASSERT_EQ(objects.count("Service"), 1u);
  const YAML::Node stateful_set = objects.find("StatefulSet")->second;
  EXPECT_EQ(stateful_set["spec"]["replicas"].as<int>(), 1) << "one SQLite writer";
  EXPECT_EQ(stateful_set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as<std::string>(),
            "db");
  const YAML::Node container = stateful_set["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(container["readinessProbe"]["grpc"]["port"].as<int>(), 50051);
  EXPECT_EQ(container["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
  EXPECT_EQ(container["livenessProbe"]["httpGet"]["port"].as<int>(), 8080);
  bool db_mounted = false;
  for (const YAML::Node& mount : container["volumeMounts"]) {
    db_mounted |= mount["name"].as<std::string>() == "db" &&
                  mount["mountPath"].as<std::string>() == "/var/lib/bitsweep/db";
  }
  EXPECT_TRUE(db_mounted);
  const std::vector<std::string> args = Strings(container["args"]);
  EXPECT_TRUE(Contains(args, "--db=/var/lib/bitsweep/db/bitsweep.db"));
  ExpectFlagsExist(args, BITSWEEP_SERVER_BIN, "k8s server");

  const YAML::Node service = objects.find("Service")->second;
  std::set<int> ports;
  for (const YAML::Node& port : service["spec"]["ports"]) ports.insert(port["port"].as<int>());
  EXPECT_EQ(ports, (std::set<int>{50051, 8080}));
  EXPECT_EQ(service["metadata"]["name"].as<std::string>(), "bitsweep-server");
}

TEST(KubernetesTest, WorkerDeploymentPointsAtServiceWithProcessProbe) {
  std::multimap<std::string, YAML::Node> objects = KubernetesObjects();
  ASSERT_EQ(objects.count("Deployment"), 1u);
  const YAML::Node deployment = objects.find("Deployment")->second;
  const YAML::Node container = deployment["spec"]["template"]["spec"]["containers"][0];
  const std::vector<std::string> args = Strings(container["args"]);
  EXPECT_EQ(args.at(0), "bitsweep-worker");
  EXPECT_TRUE(Contains(args, "--server=bitsweep-server:50051"));
  EXPECT_TRUE(container["livenessProbe"]["exec"]["command"].IsSequence());
  ExpectFlagsExist(args, BITSWEEP_WORKER_BIN, "k8s worker");
}

TEST(DockerfileTest, InstallsTheOnePackageListAndShipsTheBinaries) {
  const std::string dockerfile = ReadText(kSource / "docker/Dockerfile");
  EXPECT_NE(dockerfile.find("COPY scripts/debian-packages.txt"), std::string::npos);
  for (const char* binary : {"bitsweep-server", "bitsweep-worker", "/client/bitsweep"}) {
    EXPECT_NE(dockerfile.find(binary), std::string::npos) << binary;
  }
  EXPECT_NE(dockerfile.find("EXPOSE 50051 8080"), std::string::npos);
  EXPECT_NE(dockerfile.find("--uid 10001"), std::string::npos)
      << "k8s runAsUser/fsGroup 10001 must match the image's user";
  EXPECT_TRUE(fs::exists(kSource / "scripts/debian-packages.txt"));
}

TEST(SlurmTest, BatchScriptIsValidBashAndRunsAnArrayOfWorkers) {
  const fs::path script = kSource / "docker/slurm/bitsweep-workers.sbatch";
  int exit_code = -1;
  RunCommand("bash -n '" + script.string() + "' 2>&1", &exit_code);
  EXPECT_EQ(exit_code, 0);
  const std::string text = ReadText(script);
  EXPECT_NE(text.find("#SBATCH --array="), std::string::npos);
  EXPECT_NE(text.find("exec \"$worker_binary\""), std::string::npos);
  // The flags it passes exist.
  std::vector<std::string> args;
  static const std::regex kFlag(R"((--[a-z][a-z0-9-]*) )");
  const std::string command_part = text.substr(text.find("args=("));
  for (auto it = std::sregex_iterator(command_part.begin(), command_part.end(), kFlag);
       it != std::sregex_iterator(); ++it) {
    args.push_back((*it)[1]);
  }
  EXPECT_GE(args.size(), 5u);
  ExpectFlagsExist(args, BITSWEEP_WORKER_BIN, "the Slurm script");
}

// The shell commands of the ```sh blocks in `markdown` (from `section` to the next "## ", or the
// whole file when `section` is empty), continuation lines joined and comments dropped.
std::vector<std::string> ShellLines(const std::string& markdown, const std::string& section) {
  std::string text = markdown;
  if (!section.empty()) {
    const size_t start = text.find(section);
    if (start == std::string::npos) return {};
    const size_t end = text.find("\n## ", start + section.size());
    text = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
  }
  std::vector<std::string> lines;
  std::istringstream in(text);
  bool in_block = false;
  std::string pending;
  for (std::string line; std::getline(in, line);) {
    const size_t fence = line.find("```");
    if (fence != std::string::npos) {
      in_block = !in_block && line.compare(fence, 5, "```sh") == 0;
      continue;
    }
    if (!in_block) continue;
    if (const size_t hash = line.find(" #"); hash != std::string::npos) line.resize(hash);
    if (line.find_first_not_of(' ') != std::string::npos &&
        line[line.find_first_not_of(' ')] == '#') {
      continue;
    }
    if (!line.empty() && line.back() == '\\') {
      line.pop_back();
      pending += line + " ";
      continue;
    }
    lines.push_back(pending + line);
    pending.clear();
  }
  return lines;
}

// For each invocation of `program` in `lines`: the words after it.
std::vector<std::vector<std::string>> Invocations(const std::vector<std::string>& lines,
                                                  const std::string& program) {
  std::vector<std::vector<std::string>> found;
  for (const std::string& line : lines) {
    std::istringstream words(line);
    std::vector<std::string> args;
    bool in_command = false;
    for (std::string word; words >> word;) {
      if (word == ";" || word == "&&" || word == "|" || word == "&") {
        if (in_command) found.push_back(args);
        in_command = false;
        continue;
      }
      if (in_command) {
        args.push_back(word);
      } else if (word == program ||
                 // A path to the binary, not a Kubernetes object such as deployment/NAME.
                 (fs::path(word).filename() == program &&
                  (word[0] == '/' || word[0] == '.' || word.rfind("build/", 0) == 0))) {
        in_command = true;
        args.clear();
      }
    }
    if (in_command) found.push_back(args);
  }
  return found;
}

// README "Scaling out" and docs/deploy.md are what a newcomer follows to add machines: every
// flag their commands pass must exist (the CLI's: globally or on the subcommand used).
TEST(DocsTest, ScalingOutCommandsUseOnlyRealFlags) {
  const std::string readme = ReadText(kSource / "README.md");
  const std::vector<std::string> scaling_out = ShellLines(readme, "## Scaling out");
  ASSERT_FALSE(scaling_out.empty()) << "README.md has no \"## Scaling out\" with sh blocks";
  const std::vector<std::string> deploy = ShellLines(ReadText(kSource / "docs/deploy.md"), "");
  for (const auto& [lines, where] :
       {std::pair{scaling_out, "README Scaling out"}, std::pair{deploy, "docs/deploy.md"}}) {
    int servers = 0, workers = 0;
    for (const std::vector<std::string>& args : Invocations(lines, "bitsweep-server")) {
      ExpectFlagsExist(args, BITSWEEP_SERVER_BIN, where);
      ++servers;
    }
    for (const std::vector<std::string>& args : Invocations(lines, "bitsweep-worker")) {
      ExpectFlagsExist(args, BITSWEEP_WORKER_BIN, where);
      ++workers;
    }
    EXPECT_GT(servers, 0) << where;
    EXPECT_GT(workers, 0) << where;
    const std::set<std::string> global = HelpFlags(BITSWEEP_CLI_BIN);
    for (const std::vector<std::string>& args : Invocations(lines, "bitsweep")) {
      // The subcommand: the first word that is not a flag or a flag's value.
      std::string command;
      for (size_t i = 0; i < args.size(); ++i) {
        if (args[i].rfind("-", 0) == 0) {
          if (args[i].find('=') == std::string::npos) ++i;  // Every global option takes a value.
          continue;
        }
        command = args[i];
        break;
      }
      ASSERT_FALSE(command.empty()) << where << ": a bitsweep command without a subcommand";
      std::set<std::string> known = global;
      for (const std::string& flag : HelpFlags(std::string(BITSWEEP_CLI_BIN) + " " + command)) {
        known.insert(flag);
      }
      for (const std::string& flag : FlagNames(args)) {
        EXPECT_TRUE(known.count(flag)) << where << " passes " << flag << " to bitsweep " << command
                                       << ", which its --help does not list";
      }
    }
  }
}

}  // namespace
}  // namespace bitsweep::deploy
