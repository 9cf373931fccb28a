// Shell completion for the bitsweep CLI, generated from the CLI11 definition itself so that
// a new command or flag is completed without anyone remembering to update a script.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace bitsweep::client {

// A bash script defining and registering `_bitsweep`: completes commands, their flags, values
// of --format, file names after -o/--output and for `submit`, and "bash" for `completion`.
// Use: source <(bitsweep completion bash)
std::string BashCompletionScript(const CLI::App& app);

}  // namespace bitsweep::client
