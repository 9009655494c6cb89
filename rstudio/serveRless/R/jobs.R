# Launching and watching jobs. A job handle says how it was launched (`via`): "cli" runs the
# serverless-score command line on this machine; the cloud backends are picked by the job's
# `backend` (or `backend =` here) and still go through the CLI, and an HTTP trigger can be added
# as another `via` with the same job_status() / wait_job() contract.

#' Run a scoring job and return its result.
#'
#' @param job Path of the job file (TOML).
#' @param backend Where to run: NULL for the job file's own `backend`, or "local" (later "docker",
#'   "aci").
#' @param wait TRUE to wait for the end (progress streams to the console), FALSE to return a job
#'   handle at once (see [submit_job()]).
#' @param ... Job keys to override, e.g. `chunks = 8, max_parallel = 4` (`--set key=value`);
#'   `model = "pins://FOLDER/NAME"` (or `@VERSION`) scores a pinned model (see [push_model()]).
#' @param quiet TRUE to not echo progress.
#' @return A list of class `serverless_score_result`: `status`, `rows_in`, `rows_out`, `output`,
#'   `manifest`, `timings`, `job_id`, `rows_failed` and `errors` (with `on_error = "skip"`: how
#'   many rows were left out, and the errors file listing them), `model` (the file scored, its
#'   sha256 and, for a pins:// or MLflow model, `source`: the URI and the version it resolved
#'   to), ... On failure an error of class
#'   `serverless_score_job_error` whose message has the failing task and the end of its log.
#' @export
score_job <- function(job = "score.toml", backend = NULL, wait = TRUE, ..., quiet = FALSE) {
  handle <- submit_job(job, backend = backend, ...)
  if (!wait) return(handle)
  # Leaving early (Esc, Ctrl-C, an error) stops the job: the CLI then deletes its workers.
  on.exit(if (handle$process$is_alive()) stop_job(handle), add = TRUE)
  wait_job(handle, quiet = quiet)
}

#' Start a scoring job without waiting for it.
#'
#' @inheritParams score_job
#' @return A job handle (class `serverless_score_job`) for [job_status()] and [wait_job()].
#' @export
submit_job <- function(job = "score.toml", backend = NULL, ...) {
  if (!file.exists(job)) {
    stop(serveRless_error(sprintf("job file '%s' does not exist (working directory: %s)",
                                  job, getwd())))
  }
  cli <- find_cli()
  overrides <- list(...)
  if (!is.null(backend)) overrides$backend <- backend
  args <- c("run", normalizePath(job), "--json", override_args(overrides))
  logs <- tempfile("serverless-score-")
  process <- processx::process$new(cli, args, stdout = paste0(logs, ".out"),
                                   stderr = paste0(logs, ".err"), env = cli_env(),
                                   cleanup = TRUE)
  structure(class = "serverless_score_job", list(
    via = "cli", job = normalizePath(job), cli = cli, args = args, process = process,
    stdout = paste0(logs, ".out"), stderr = paste0(logs, ".err"), started = Sys.time(),
    shown = new.env()))
}

#' Where a job is: running (with its progress so far) or finished (with its result).
#'
#' @param job A handle from [submit_job()], or a job file (or the job's output path or blob
#'   URI): then `serverless-score status --json` reads the job's stored state, while it runs or
#'   after it ended (from any R session, e.g. after RStudio restarted).
#' @param ... With a job file: the job keys that were overridden for the run (`--set`).
#' @return For a handle, a list: `status` ("running", "succeeded", "up-to-date", "failed",
#'   "interrupted"), `tasks_done`, `tasks_total`, `rows` while running; the full result once
#'   finished. For a job file, the list of `status --json`: `status` (the same as `state`:
#'   "succeeded", "running", "failed", "stopped" or "pending"), `job_id`, `name`, `output`,
#'   `manifest` (NULL until it succeeded), `backend`, `tasks_total`, `tasks_done`, `rows`,
#'   `live_groups`, `usage`, `controller`, `id_columns`, `output_format`, and `tasks`: a
#'   data.frame with a row per task (`id`, `input`, `state`, `attempts`, `rows`, `rows_failed`,
#'   `seconds`, `group`, `reason`, `evictions`).
#' @export
job_status <- function(job, ...) {
  if (!inherits(job, "serverless_score_job")) return(stored_status(job, list(...)))
  handle <- job
  check_handle(handle)
  if (identical(handle$via, "http")) return(http_job_status(handle))
  if (handle$process$is_alive()) {
    progress <- progress_of(read_lines(handle$stderr))
    return(c(list(status = "running", job = handle$job,
                  elapsed_s = as.numeric(difftime(Sys.time(), handle$started, units = "secs"))),
             progress))
  }
  finished_result(handle)
}

# A job file or output: its target for the CLI and the --set arguments it was run with.
job_target <- function(job, overrides, what) {
  if (inherits(job, "serverless_score_job")) {
    check_handle(job)
    if (!identical(job$via, "cli")) {
      stop(serveRless_error(sprintf("%s: a job run through a Logic App has its logs in the Logic App's run history",
                                    what)))
    }
    return(list(target = job$job, set = handle_set_args(job)))
  }
  if (!is.character(job) || length(job) != 1L || is.na(job)) {
    stop(serveRless_error(sprintf("%s: expected a job file, a job's output path or a job handle", what)))
  }
  if (grepl("\\.toml$", job, ignore.case = TRUE) && !file.exists(job)) {
    stop(serveRless_error(sprintf("%s: job file '%s' does not exist (working directory: %s)",
                                  what, job, getwd())))
  }
  list(target = if (file.exists(job)) normalizePath(job) else job, set = override_args(overrides))
}

# The `--set key=value` pairs a handle's run was given (status and logs need the same job).
handle_set_args <- function(handle) {
  at <- which(handle$args == "--set")
  as.vector(rbind("--set", handle$args[at + 1L]))
}

stored_status <- function(job, overrides) {
  where <- job_target(job, overrides, "job_status")
  out <- cli_call(c("status", where$target, "--json", where$set))
  if (out$status != 0L || is.null(out$json$state)) {
    stop(serveRless_error(sprintf("job_status: %s", cli_problem(out))))
  }
  c(list(status = out$json$state), out$json)
}

#' A job's task logs: everything each task printed, R's messages and errors included.
#'
#' Wraps `serverless-score logs --json`: the stored log of each task's attempt, or while an
#' attempt runs, its live group's log.
#' @param job A job file, the job's output path or blob URI, or a handle from [submit_job()].
#' @param task Task number or id (`3`, `"t00003"`); NULL for every task that has run.
#' @param attempt Which attempt of `task` (default: the latest, live if it is running).
#' @param ... With a job file: the job keys that were overridden for the run (`--set`).
#' @return A named character vector, one log per task (names: the task ids), with attributes
#'   `attempt` and `source` (where each log was read). `character(0)` when no task has run yet.
#' @export
job_logs <- function(job, task = NULL, attempt = NULL, ...) {
  where <- job_target(job, list(...), "job_logs")
  args <- c("logs", where$target, "--json", where$set,
            if (!is.null(task)) c("--task", as.character(task)),
            if (!is.null(attempt)) c("--attempt", as.character(attempt)))
  out <- cli_call(args)
  if (out$status != 0L || is.null(out$json$logs)) {
    stop(serveRless_error(sprintf("job_logs: %s", cli_problem(out))))
  }
  logs <- out$json$logs
  if (!length(logs) || !NROW(logs)) {
    return(structure(stats::setNames(character(0), character(0)), attempt = integer(0),
                     source = character(0)))
  }
  structure(stats::setNames(as.character(logs$text), logs$task_id),
            attempt = as.integer(logs$attempt), source = as.character(logs$source))
}

#' Wait for a job, echoing its progress; its result, or an error saying what failed.
#'
#' @param handle A handle from [submit_job()].
#' @param quiet TRUE to not echo progress.
#' @param poll Seconds between looks at the job.
#' @param timeout Seconds to wait at most (jobs submitted with [submit_http()]).
#' @export
wait_job <- function(handle, quiet = FALSE, poll = 0.2, timeout = 6 * 3600) {
  check_handle(handle)
  if (identical(handle$via, "http")) return(http_wait(handle, poll = max(poll, 1), timeout = timeout))
  repeat {
    alive <- handle$process$is_alive()
    if (!quiet) echo_new_lines(handle)
    if (!alive) break
    Sys.sleep(poll)
  }
  result <- finished_result(handle)
  if (!result$status %in% c("succeeded", "up-to-date")) stop(job_failed(result))
  result  # the CLI already printed its summary with the progress
}

#' Stop a running job: its workers are deleted and nothing is written.
#'
#' Like Ctrl-C in a terminal running `serverless-score run`: the command line stops its tasks,
#' deletes the workers (containers) it created and exits. [score_job()] calls it when R is
#' interrupted (Esc, Ctrl-C) while it waits.
#' @param handle A handle from [submit_job()] or `score_job(wait = FALSE)`.
#' @param timeout Seconds to wait for the command line to clean up before killing it.
#' @return The job's result, invisibly: `status` is "interrupted" when it was stopped (its
#'   `error` says what was cleaned up), or what it ended with when it had already finished; NULL
#'   when the command line left no result.
#' @export
stop_job <- function(handle, timeout = 15) {
  check_handle(handle)
  if (identical(handle$via, "http")) {
    stop(serveRless_error(paste("stop_job: a job run through a Logic App is stopped by cancelling",
                                "its run (Azure portal: the Logic App's run history, Cancel run)")))
  }
  if (handle$process$is_alive()) {
    handle$process$interrupt()  # like Ctrl-C in a terminal: the CLI stops and deletes workers
    handle$process$wait(timeout * 1000)
    if (handle$process$is_alive()) handle$process$kill()
  }
  invisible(tryCatch(finished_result(handle), serverless_score_error = function(e) NULL))
}

check_handle <- function(handle) {
  if (!inherits(handle, "serverless_score_job")) {
    stop(serveRless_error("expected a job handle from submit_job() or score_job(wait = FALSE)"))
  }
  if (!handle$via %in% c("cli", "http")) {
    stop(serveRless_error(sprintf("job handles via '%s' are not supported by this version",
                                  handle$via)))
  }
}

read_lines <- function(path) {
  if (!file.exists(path)) return(character(0))
  readLines(path, warn = FALSE, encoding = "UTF-8")
}

echo_new_lines <- function(handle) {
  lines <- read_lines(handle$stderr)
  shown <- if (is.null(handle$shown$n)) 0L else handle$shown$n
  complete <- length(lines)
  if (handle$process$is_alive()) complete <- complete - 1L  # the last line may be half written
  if (complete > shown) {
    for (line in lines[(shown + 1L):complete]) if (nzchar(trimws(line))) message(line)
    handle$shown$n <- complete
  }
}

# "task t00001 done: 50,002 rows in 0.5s (2/4 tasks, 100,000 rows)" -> counts so far.
progress_of <- function(lines) {
  done <- grep("^task \\S+ done: .*\\((\\d+)/(\\d+) tasks, ([0-9,]+) rows\\)", lines, value = TRUE)
  if (!length(done)) return(list(tasks_done = 0L, tasks_total = NA_integer_, rows = 0))
  last <- regmatches(done[length(done)],
                     regexec("\\((\\d+)/(\\d+) tasks, ([0-9,]+) rows\\)", done[length(done)]))[[1L]]
  list(tasks_done = as.integer(last[2L]), tasks_total = as.integer(last[3L]),
       rows = as.numeric(gsub(",", "", last[4L], fixed = TRUE)))
}

finished_result <- function(handle) {
  handle$process$wait()
  stdout <- paste(read_lines(handle$stdout), collapse = "\n")
  result <- parse_result(stdout)
  if (is.null(result)) {
    tail <- paste(utils::tail(read_lines(handle$stderr), 20L), collapse = "\n")
    stop(serveRless_error(sprintf(
      "serverless-score exited with code %s without a result:\n%s",
      handle$process$get_exit_status(), tail)))
  }
  result$exit_code <- handle$process$get_exit_status()
  structure(result, class = "serverless_score_result")
}

job_failed <- function(result) {
  err <- result[["error"]]
  message <- sprintf("scoring %s %s: %s", job_words(result$job_id), result$status, err$message)
  if (!is.null(err$task_id)) {
    message <- paste0(message, "\n-- last lines of the log of task ", err$task_id, " --\n",
                      err$log_tail)
  }
  if (!is.null(err$hint) && nzchar(err$hint)) message <- paste0(message, "\nhint: ", err$hint)
  serveRless_error(message, class = "serverless_score_job_error", result = result,
                   task_id = err$task_id)
}

summary_line <- function(result) {
  if (!is.null(result$run_id)) {  # from a Logic App (submit_http)
    return(sprintf("%s: %s rows -> %s (%s, Logic App run %s)", result$status,
                   format(if (is.null(result$rows_out)) NA else result$rows_out, big.mark = ","),
                   if (is.null(result$output)) "?" else result$output,
                   job_words(result$job_id), result$run_id))
  }
  if (!is.null(result[["error"]]$message) && !identical(result$status, "succeeded")) {
    return(sprintf("%s %s: %s", job_words(result$job_id), result$status, result[["error"]]$message))
  }
  if (identical(result$status, "up-to-date")) {
    return(sprintf("up to date: %s was already written by this job (%s rows)", result$output,
                   format(result$rows_out, big.mark = ",")))
  }
  line <- sprintf("%s: %s rows from %s %s in %.1fs -> %s", result$status,
                  format(result$rows_out, big.mark = ","), result$tasks,
                  if (identical(as.numeric(result$tasks), 1)) "task" else "tasks",
                  if (is.null(result$timings$total_s)) NA_real_ else result$timings$total_s,
                  result$output)
  failed <- if (is.null(result$rows_failed)) 0 else result$rows_failed
  if (failed > 0) {  # on_error = "skip": rows left out, listed beside the output
    line <- sprintf("%s; %s %s failed and %s left out (see %s)", line,
                    format(failed, big.mark = ","), if (failed == 1) "row" else "rows",
                    if (failed == 1) "was" else "were",
                    if (is.null(result$errors)) "the errors file" else result$errors)
  }
  line
}

#' @export
print.serverless_score_result <- function(x, ...) {
  cat("<serverless-score result>", summary_line(x), "\n")
  invisible(x)
}

#' @export
print.serverless_score_job <- function(x, ...) {
  if (identical(x$via, "http")) {
    cat(sprintf("<serverless-score job> via Logic App %s (started %s)\n", x$job,
                format(x$started, "%H:%M:%S")))
    return(invisible(x))
  }
  state <- if (x$process$is_alive()) "running" else "finished"
  cat(sprintf("<serverless-score job> %s (%s, started %s)\n", x$job, state,
              format(x$started, "%H:%M:%S")))
  invisible(x)
}
