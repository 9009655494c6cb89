# Finding and calling the serverless-score command line. Everything this package does goes
# through the CLI (`serverless-score ... --json`), so R and Python agree on what a job is.

cli_install_hint <- paste0(
  "Install it with `pip install serverless-score` (or `make setup` in its repository, which ",
  "puts it in .venv/bin), then add its folder to PATH or tell R where it is: ",
  "options(serveRless.cli = \"/path/to/serverless-score\") or ",
  "Sys.setenv(SERVERLESS_SCORE_CLI = \"/path/to/serverless-score\"). ",
  "RStudio started from a desktop menu may not see your shell's PATH."
)

serveRless_error <- function(message, class = NULL, ...) {
  structure(class = c(class, "serverless_score_error", "error", "condition"),
            list(message = message, call = NULL, ...))
}

#' The serverless-score executable R uses.
#'
#' Looked up in order: `options(serveRless.cli)`, the `SERVERLESS_SCORE_CLI` environment
#' variable, then `serverless-score` on the PATH.
#' @return The path of the executable; an error saying how to install it when there is none.
#' @export
find_cli <- function() {
  candidates <- c(option = getOption("serveRless.cli", ""),
                  environment = Sys.getenv("SERVERLESS_SCORE_CLI", ""),
                  path = unname(Sys.which("serverless-score")))
  for (where in names(candidates)) {
    cli <- candidates[[where]]
    if (!nzchar(cli)) next
    if (file.exists(cli) && file.access(cli, 1L) == 0L) return(normalizePath(cli))
    stop(serveRless_error(sprintf(
      "the serverless-score command line set by %s (%s) does not exist or is not executable. %s",
      c(option = "options(serveRless.cli)", environment = "SERVERLESS_SCORE_CLI",
        path = "PATH")[[where]], cli, cli_install_hint), class = "serverless_score_cli_missing"))
  }
  stop(serveRless_error(
    paste("the serverless-score command line is not installed or not on PATH.", cli_install_hint),
    class = "serverless_score_cli_missing"))
}

# `--set key=value` for each override; values as TOML (JSON scalars and arrays are valid TOML).
override_args <- function(overrides) {
  if (!length(overrides)) return(character(0))
  if (is.null(names(overrides)) || any(!nzchar(names(overrides)))) {
    stop(serveRless_error("job overrides must be named, e.g. score_job(\"score.toml\", chunks = 8)"))
  }
  values <- vapply(overrides, function(v) {
    as.character(jsonlite::toJSON(v, auto_unbox = TRUE))
  }, "")
  as.vector(rbind("--set", paste0(names(overrides), "=", values)))
}

cli_env <- function() {
  # Wide lines: the CLI wraps long messages at the width it believes the console has.
  c("current", COLUMNS = "200")
}

# The last stdout line that is a JSON object (`--json` prints exactly one).
parse_result <- function(stdout) {
  lines <- rev(strsplit(stdout, "\n", fixed = TRUE)[[1L]])
  for (line in lines) {
    if (startsWith(trimws(line), "{")) {
      return(jsonlite::fromJSON(line, simplifyVector = TRUE))
    }
  }
  NULL
}
