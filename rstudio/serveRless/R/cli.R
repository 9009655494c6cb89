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
  c("current", COLUMNS = "200", LD_LIBRARY_PATH = user_ld_library_path())
}

# R's start-up script (R_HOME/etc/ldpaths) puts R's library folders, the system's among them,
# first on LD_LIBRARY_PATH, and the programs R starts inherit it: a Python linked to its own
# libpython (pyenv, conda, a venv of either) then loads the system's copy and fails on its first
# `import ssl` (undefined symbol), i.e. on Parquet and Blob Storage. The CLI gets the
# LD_LIBRARY_PATH the user had before R started (empty: none).
user_ld_library_path <- function() {
  current <- Sys.getenv("LD_LIBRARY_PATH")
  if (is.null(ld_cache$prefix)) ld_cache$prefix <- r_ld_prefix()
  prefix <- ld_cache$prefix
  if (!nzchar(prefix)) return(current)
  # Once per R started from R (R CMD check runs R that runs R): strip them all.
  while (startsWith(current, prefix)) current <- sub("^:", "", substring(current, nchar(prefix) + 1L))
  current
}

ld_cache <- new.env(parent = emptyenv())

# What ldpaths prepends: the script run with an empty LD_LIBRARY_PATH ("" when there is none).
r_ld_prefix <- function() {
  ldpaths <- file.path(R.home("etc"), "ldpaths")
  if (.Platform$OS.type != "unix" || !file.exists(ldpaths)) return("")
  script <- sprintf('unset LD_LIBRARY_PATH; R_HOME=%s; . %s; printf %%s "$LD_LIBRARY_PATH"',
                    shQuote(R.home()), shQuote(ldpaths))
  out <- tryCatch(processx::run("sh", c("-c", script), error_on_status = FALSE),
                  error = function(e) NULL)
  if (is.null(out) || out$status != 0L) "" else out$stdout
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

# Run the CLI to completion: list(status, stdout, stderr, json = its --json object or NULL).
cli_call <- function(args, stdout = "|") {
  out <- processx::run(find_cli(), args, error_on_status = FALSE, env = cli_env(),
                       stdout = stdout)
  json <- if (identical(stdout, "|")) parse_result(out$stdout) else NULL
  list(status = out$status, stdout = if (is.null(out$stdout)) "" else out$stdout,
       stderr = out$stderr, json = json)
}

# What the CLI said went wrong, hint included: its --json error when it printed one, else the
# `error: ...` and `hint: ...` lines it printed on stderr.
cli_problem <- function(out) {
  err <- if (is.list(out$json)) out$json[["error"]] else NULL
  if (is.list(err) && !is.null(err$message)) {
    text <- err$message
    if (!is.null(err$log_tail) && nzchar(err$log_tail)) {
      text <- paste0(text, "\n-- last lines of the log of task ", err$task_id, " --\n", err$log_tail)
    }
    if (!is.null(err$hint) && nzchar(err$hint)) text <- paste0(text, "\nhint: ", err$hint)
    return(text)
  }
  text <- trimws(out$stderr)
  text <- sub("^error: *", "", text)
  if (nzchar(text)) text else sprintf("serverless-score exited with code %s", out$status)
}

# "job j-123" or, when the job has no id yet (it failed before planning), just "job".
job_words <- function(job_id) {
  if (is.null(job_id) || !length(job_id) || is.na(job_id[[1L]]) || !nzchar(job_id[[1L]])) "job"
  else paste("job", job_id[[1L]])
}
