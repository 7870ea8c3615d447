#pragma once

/// `image-edit-agent convert IN OUT [--for-validation] [--png-compression N]`: the service's
/// own intake path from the command line. Writes the model-ready PNG (or, with
/// --for-validation, the vision-model copy, whose real extension replaces OUT's when it is a
/// JPEG) and returns 0; otherwise prints one plain-words line on stderr and returns 1
/// (2 for a usage error).

#include <string>
#include <vector>

namespace iea::image {

[[nodiscard]] int run_convert_command(const std::vector<std::string>& arguments);

}  // namespace iea::image
