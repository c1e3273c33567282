// Each tools/cmd_*.cpp registers its subcommand here with NQ_REGISTER_COMMAND; main.cpp adds them in order.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace nq::cli {

// Adds the subcommand's options to `sub` and sets `sub.callback(...)` to run it. Callbacks throw nq::Error.
using CommandSetup = std::function<void(CLI::App& sub)>;

struct CommandInfo {
  std::string name;
  std::string summary;
  int order;  // position in `netquant --help`
  CommandSetup setup;
};

std::vector<CommandInfo>& command_registry();

struct CommandRegistration {
  CommandRegistration(const char* name, const char* summary, int order, CommandSetup setup) {
    command_registry().push_back({name, summary, order, std::move(setup)});
  }
};

}  // namespace nq::cli

#define NQ_REGISTER_COMMAND(id, name, summary, order, setup_fn) \
  static ::nq::cli::CommandRegistration nq_command_registration_##id(name, summary, order, setup_fn)
