# Sourced by the scripts/build-*.sh scripts: the part every cached build shares.
#
#   cached_binary NAME PREFIX DEFAULT_VERSION
#
# With ${PREFIX}_BIN set, prints it and exits (no build). Else sets `version`
# (${PREFIX}_VERSION, default DEFAULT_VERSION), `dir` (the cache folder
# ${PREFIX}_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-apikeys,
# plus NAME-version) and `bin` (dir/NAME). A binary already built is printed and
# the script exits; otherwise the function returns holding the version's lock, so
# one build runs at a time even when several clones start together, and the
# caller builds into $bin.
cached_binary() {
  local name="$1" prefix="$2" default_version="$3" override cache
  override="${prefix}_BIN"
  if [[ -n "${!override:-}" ]]; then
    [[ -x "${!override}" ]] || { echo "$override=${!override} is not an executable file" >&2; exit 1; }
    echo "${!override}"
    exit 0
  fi
  local version_var="${prefix}_VERSION" cache_var="${prefix}_CACHE"
  version="${!version_var:-$default_version}"
  cache="${!cache_var:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-secrets-apikeys}"
  dir="$cache/$name-$version"
  bin="$dir/$name"
  if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
  fi
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9
  if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
  fi
}
