#pragma once

/// Operator commands of image-edit-agent that talk to ClickUp and the providers once and exit:
/// `webhook create|list|delete|health` and `replay TASK_ID`. Each returns the process exit
/// code and writes what the operator reads to `out`, problems to `err`; logs go to stderr.

#include <ostream>
#include <string>
#include <vector>

#include "iea/config/settings.hpp"

namespace iea::service {

/// Exit codes shared by the commands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitProblem = 1;  ///< A webhook is unhealthy, or a call failed.
inline constexpr int kExitUsage = 2;    ///< Bad arguments or missing settings.

/// `webhook SUBCOMMAND ...` with `arguments` after the word "webhook":
///   create [--endpoint URL] [--space ID] [--folder ID] [--list ID]
///   list
///   delete WEBHOOK_ID
///   health [--endpoint URL] [--reactivate]
/// Needs CLICKUP_API_KEY and, except for delete, CLICKUP_TEAM_ID. `health` exits 1 when a
/// webhook it checks was failing or suspended (even if --reactivate brought it back, since
/// ClickUp never resends the events it dropped), or when none delivers to the endpoint.
[[nodiscard]] int run_webhook_command(const config::Settings& settings,
                                      const std::vector<std::string>& arguments,
                                      std::ostream& out,
                                      std::ostream& err);

/// `replay TASK_ID [--tick]`: runs the pipeline for one task now, as a ticked box would, and
/// prints how it ended. The box must be ticked already (the usual case: a tick whose webhook
/// never arrived); --tick ticks it first. Exit 0 completed, 1 needs review or blocked, 2 bad
/// arguments, 3 the box was not ticked.
[[nodiscard]] int run_replay_command(const config::Settings& settings,
                                     const std::vector<std::string>& arguments,
                                     std::ostream& out,
                                     std::ostream& err);

}  // namespace iea::service
