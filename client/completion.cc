#include "client/completion.h"

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bitsweep::client {
namespace {

void AddUnique(std::vector<std::string>* words, const std::string& word) {
  if (std::find(words->begin(), words->end(), word) == words->end()) words->push_back(word);
}

// Appends the "--long" and "-s" names of `app`'s flags and options to `words`, and those of
// options taking a value also to `value_options`: the script skips their values when it looks
// for the command word, and completes file names or nothing after them.
void CollectFlags(const CLI::App& app, std::vector<std::string>* words,
                  std::vector<std::string>* value_options) {
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_positional()) continue;
    std::vector<std::string> names;
    for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
    for (const std::string& name : option->get_snames()) names.push_back("-" + name);
    for (const std::string& name : names) {
      AddUnique(words, name);
      if (option->get_expected_min() > 0) AddUnique(value_options, name);
    }
  }
}

// Options whose value is a path: output files, token files, certificates.
bool TakesPath(const std::string& option) {
  return option == "-o" || option == "--output" || absl::StrContains(option, "file") ||
         absl::StartsWith(option, "--tls-");
}

}  // namespace

std::string BashCompletionScript(const CLI::App& app) {
  std::vector<std::string> global_flags;
  std::vector<std::string> value_options;
  CollectFlags(app, &global_flags, &value_options);
  std::vector<std::string> command_names;
  std::string command_cases;
  for (const CLI::App* command : app.get_subcommands({})) {
    const std::string& name = command->get_name();
    command_names.push_back(name);
    std::vector<std::string> flags;
    CollectFlags(*command, &flags, &value_options);
    for (const std::string& flag : global_flags) AddUnique(&flags, flag);
    std::string positional = "COMPREPLY=()";
    if (name == "submit") {
      positional = "COMPREPLY=($(compgen -f -- \"$cur\"))";
    } else if (name == "completion") {
      positional = "COMPREPLY=($(compgen -W \"bash\" -- \"$cur\"))";
    }
    absl::StrAppend(&command_cases, "    ", name, ")\n", "      if [[ $cur == -* ]]; then\n",
                    "        COMPREPLY=($(compgen -W \"", absl::StrJoin(flags, " "),
                    "\" -- \"$cur\"))\n", "      else\n", "        ", positional, "\n",
                    "      fi\n", "      ;;\n");
  }
  std::vector<std::string> path_options;
  std::vector<std::string> other_value_options;
  for (const std::string& option : value_options) {
    if (option == "--format") continue;
    (TakesPath(option) ? path_options : other_value_options).push_back(option);
  }
  // A pattern that matches nothing keeps the generated `case` valid when a list is empty.
  auto pattern = [](const std::vector<std::string>& options) {
    return options.empty() ? std::string("__none__") : absl::StrJoin(options, "|");
  };

  return absl::StrCat(
      "# bash completion for bitsweep. Enable with:  source <(bitsweep completion bash)\n"
      "# or install:  bitsweep completion bash > ~/.local/share/bash-completion/completions/"
      "bitsweep\n"
      "_bitsweep() {\n"
      "  local cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
      "  local prev=\"\"\n"
      "  if ((COMP_CWORD > 0)); then prev=\"${COMP_WORDS[COMP_CWORD-1]}\"; fi\n"
      "  case \"$prev\" in\n"
      "    --format) COMPREPLY=($(compgen -W \"csv json\" -- \"$cur\")); return 0 ;;\n"
      "    ",
      pattern(path_options),
      ") COMPREPLY=($(compgen -f -- \"$cur\")); return 0 ;;\n"
      "    ",
      pattern(other_value_options),
      ") COMPREPLY=(); return 0 ;;\n"
      "  esac\n"
      "  local command=\"\" i\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    case \"${COMP_WORDS[i]}\" in\n"
      "      ",
      pattern(value_options),
      ") ((i++)) ;;\n"
      "      -*) ;;\n"
      "      *) command=\"${COMP_WORDS[i]}\"; break ;;\n"
      "    esac\n"
      "  done\n"
      "  case \"$command\" in\n"
      "    \"\")\n"
      "      COMPREPLY=($(compgen -W \"",
      absl::StrJoin(command_names, " "), " ", absl::StrJoin(global_flags, " "),
      "\" -- \"$cur\"))\n"
      "      ;;\n",
      command_cases,
      "  esac\n"
      "  return 0\n"
      "}\n"
      "complete -F _bitsweep bitsweep\n");
}

}  // namespace bitsweep::client
