#pragma once

/// docs/configuration.md, rendered from the settings table itself so it cannot drift.
/// `image-edit-agent settings-doc > docs/configuration.md` regenerates it; a unit test fails
/// when the file in the tree differs.

#include <string>

namespace iea::config {

/// The whole markdown page: how settings are read, then one table row per setting (environment
/// variable, YAML key, default, meaning) in the order of the definition table.
[[nodiscard]] std::string render_configuration_markdown();

}  // namespace iea::config
