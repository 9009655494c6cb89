#' The scores of a finished job, as a data.frame.
#'
#' Reads CSV, JSONL and Parquet outputs, from a folder or from blob storage. Local CSV and JSONL
#' outputs are read by R itself (with data.table's `fread()` when it is installed); Parquet with
#' the arrow package when it is installed; anything else (Parquet without arrow, blob outputs) is
#' streamed by `serverless-score scores` as CSV.
#'
#' @param x A job file (`.toml`, the output named in it is read), a result of [score_job()] /
#'   [wait_job()], a job handle (waited for), or the output's path or blob URI.
#' @param ... Job keys that were overridden for the run, as in [score_job()] (job files only).
#' @return A data.frame, one row per scored record in input order. The job's `id_columns` are
#'   text exactly as written (leading zeros kept, `"NA"` is the text NA, an empty id is `""`,
#'   never `NA`); in other columns an empty field is `NA`.
#' @export
read_scores <- function(x, ...) {
  if (inherits(x, "serverless_score_job")) x <- wait_job(x, quiet = TRUE)
  where <- scores_source(x, list(...))
  if (where$local && where$format %in% c("csv", "lines")) return(read_csv_scores(where$path, where$ids))
  if (where$local && identical(where$format, "jsonl")) return(read_jsonl_scores(where$path, where$ids))
  if (where$local && identical(where$format, "parquet") && requireNamespace("arrow", quietly = TRUE)) {
    return(ids_as_text(as.data.frame(arrow::read_parquet(where$path)), where$ids))
  }
  # Parquet without arrow, or an output in blob storage: the CLI streams it as CSV.
  csv <- tempfile(fileext = ".csv")
  on.exit(unlink(csv), add = TRUE)
  out <- cli_call(c("scores", where$target, where$set), stdout = csv)
  if (out$status != 0L) {
    stop(serveRless_error(sprintf("read_scores: cannot read the scores of %s: %s",
                                  where$what, cli_problem(out))))
  }
  read_csv_scores(csv, where$ids)
}

# Where a job's scores are: list(path, format, ids, local, target and set for the CLI, what).
scores_source <- function(x, overrides) {
  if (is.list(x)) {  # a result: its output, once the job succeeded
    if (!is.null(x$status) && !x$status %in% c("succeeded", "up-to-date")) {
      stop(serveRless_error(sprintf("read_scores: %s has no scores: it %s", job_words(x$job_id),
                                    x$status)))
    }
    if (is.null(x$output)) stop(serveRless_error("read_scores: this result names no output"))
    x <- x$output
  }
  if (!is.character(x) || length(x) != 1L || is.na(x)) {
    stop(serveRless_error(paste("read_scores: expected a job file, a result of score_job(),",
                                "a job handle or an output path")))
  }
  if (grepl("\\.toml$", x, ignore.case = TRUE)) return(job_file_source(x, overrides))
  if (length(overrides)) stop(serveRless_error("read_scores: job keys (...) only go with a job file"))
  remote <- grepl("^[A-Za-z][A-Za-z0-9+.-]+://", x) && !startsWith(x, "file://")
  if (!remote && file.exists(x) && !grepl("\\.manifest\\.json$", x)) {
    manifest <- paste0(x, ".manifest.json")
    spec <- if (file.exists(manifest)) jsonlite::fromJSON(manifest, simplifyVector = FALSE) else NULL
    format <- spec$output$format
    if (is.null(format)) format <- format_of(x)
    return(list(path = x, format = format, ids = as.character(unlist(spec$spec$id_columns)),
                local = TRUE, target = x, set = character(0), what = x))
  }
  if (!remote && !file.exists(x)) {
    stop(serveRless_error(sprintf("read_scores: no scores at '%s': it does not exist", x)))
  }
  job_file_source(x, overrides)  # a blob URI or a manifest: the CLI knows the job
}

# From `serverless-score status --json`: the job file's (or output's) job, which must have succeeded.
job_file_source <- function(target, overrides) {
  if (grepl("\\.toml$", target, ignore.case = TRUE) && !file.exists(target)) {
    stop(serveRless_error(sprintf("read_scores: job file '%s' does not exist (working directory: %s)",
                                  target, getwd())))
  }
  if (file.exists(target)) target <- normalizePath(target)
  set <- override_args(overrides)
  out <- cli_call(c("status", target, "--json", set))
  status <- out$json
  if (out$status != 0L || is.null(status$state)) {
    stop(serveRless_error(sprintf("read_scores: cannot find the scores of %s: %s", target,
                                  cli_problem(out))))
  }
  if (!identical(status$state, "succeeded")) {
    stop(serveRless_error(sprintf(
      "read_scores: %s has no scores at %s: it is %s; job_status() and job_logs() say more",
      job_words(status$job_id), status$output, status$state)))
  }
  format <- if (is.null(status$output_format)) format_of(status$output) else status$output_format
  local <- !grepl("^[A-Za-z][A-Za-z0-9+.-]+://", status$output) && file.exists(status$output)
  list(path = status$output, format = format, ids = as.character(unlist(status$id_columns)),
       local = local, target = target, set = set, what = job_words(status$job_id))
}

format_of <- function(path) {
  ext <- tolower(regmatches(path, regexpr("[^.]*$", path)))
  if (ext %in% c("jsonl", "ndjson")) "jsonl" else if (identical(ext, "parquet")) "parquet" else "csv"
}

# Ids as text, exactly: an unquoted empty field is "" (ids are never missing: the runner reads
# them as text), "NA" stays "NA". Other columns: an empty field is NA, as the writers mean it.
read_csv_scores <- function(path, ids) {
  if (requireNamespace("data.table", quietly = TRUE)) {
    scores <- data.table::fread(path, colClasses = if (length(ids)) list(character = ids),
                                na.strings = "", data.table = FALSE, showProgress = FALSE)
  } else {
    scores <- utils::read.csv(path, colClasses = if (length(ids)) stats::setNames(rep("character", length(ids)), ids),
                              na.strings = "", check.names = FALSE, stringsAsFactors = FALSE)
  }
  ids_as_text(scores, ids)
}

read_jsonl_scores <- function(path, ids) {
  con <- file(path, encoding = "UTF-8")
  scores <- jsonlite::stream_in(con, verbose = FALSE)
  ids_as_text(scores, ids)
}

# Ids are never NA: an empty id field of a CSV input is "" (the Python runtime writes it as
# null in JSONL and Parquet outputs, which would otherwise read back as NA).
ids_as_text <- function(scores, ids) {
  for (id in intersect(ids, names(scores))) {
    if (!is.character(scores[[id]])) scores[[id]] <- as.character(scores[[id]])
    scores[[id]][is.na(scores[[id]])] <- ""
  }
  scores
}

#' Save a model with saveRDS() and store it where a job reads it.
#'
#' @param model Any R object (a fitted model).
#' @param uri Where to store it: a local path, `az://CONTAINER/PATH` or an `https://` blob URL.
#'   The model is stored at exactly `uri` (atomically; other content there is replaced, and a job
#'   still running on the old model then fails on its checksum). For versioned, never-replaced
#'   models run `serverless-score models push FILE URI` instead, or give
#'   `pins://FOLDER/NAME`: a new version of pin `NAME` on the folder board `FOLDER`, in the
#'   layout R's and Python's `pins` packages read and write (the `pins` package is not needed).
#' @return `uri`, invisibly, with attributes `bytes` and `sha256`; for a pin, the URI of the
#'   version written (`pins://FOLDER/NAME@VERSION`) with attributes `bytes`, `version` and
#'   `pin_hash`. On failure an error whose message has the CLI's reason and its hint (what to
#'   do).
#' @export
push_model <- function(model, uri) {
  if (startsWith(uri, "pins://")) return(invisible(push_pin(model, uri)))
  file <- tempfile(fileext = ".rds")
  on.exit(unlink(file), add = TRUE)
  saveRDS(model, file)
  out <- cli_call(c("models", "push", file, uri, "--exact", "--overwrite", "--json"))
  stored <- out$json
  if (out$status != 0L || is.null(stored$uri)) {
    stop(serveRless_error(sprintf("push_model: storing the model at '%s' failed: %s", uri,
                                  cli_problem(out))))
  }
  invisible(structure(stored$uri, bytes = stored$size, sha256 = stored$sha256))
}

# A new version of a pin on a folder board: BOARD/NAME/VERSION/{NAME.rds, data.txt}, the layout
# (api_version 1) pins writes. VERSION is "<UTC time>-<first 5 of the hash>", as pins names them,
# so the newest sorts last. The version is written in a hidden folder beside it and renamed into
# place, data.txt last: a reader never sees half a version.
push_pin <- function(model, uri) {
  target <- sub("^pins://", "", uri)
  name <- basename(target)
  board <- dirname(target)
  if (grepl("://", board) || !nzchar(board) || board == ".") {
    stop(serveRless_error(sprintf(paste0(
      "push_model: '%s': pins:// writes to a folder board (pins://FOLDER/NAME); for an Azure ",
      "board, pin with the pins package or push to az:// with push_model()"), uri)))
  }
  if (!grepl("^[A-Za-z0-9._-]+$", name) || startsWith(name, ".")) {
    stop(serveRless_error(sprintf(paste0(
      "push_model: '%s': a pin name is letters, digits, '.', '_' and '-' (no version: ",
      "push_model() makes one)"), name)))
  }
  dir.create(board, recursive = TRUE, showWarnings = FALSE)  # a new board is a new folder
  board <- normalizePath(board, mustWork = FALSE)
  file <- tempfile(fileext = ".rds")
  on.exit(unlink(file), add = TRUE)
  saveRDS(model, file)
  hash <- substr(unname(tools::md5sum(file)), 1, 16)
  created <- format(Sys.time(), "%Y%m%dT%H%M%SZ", tz = "UTC")
  version <- paste0(created, "-", substr(hash, 1, 5))
  dest <- file.path(board, name, version)
  bytes <- file.size(file)
  if (!dir.exists(dest)) {
    staging <- file.path(board, name, paste0(".", version, "-", Sys.getpid()))
    dir.create(staging, recursive = TRUE, showWarnings = FALSE)
    on.exit(unlink(staging, recursive = TRUE), add = TRUE)
    if (!file.copy(file, file.path(staging, paste0(name, ".rds")))) {
      stop(serveRless_error(sprintf("push_model: cannot write in the board folder '%s'", board)))
    }
    writeLines(c(
      sprintf("file: %s.rds", name),
      sprintf("file_size: %.0f", bytes),
      sprintf("pin_hash: %s", hash),
      "type: rds",
      sprintf("title: '%s: a pinned %s'", name, gsub("'", "''", class(model)[1])),
      "description: ~",
      "tags: ~",
      "urls: ~",
      sprintf("created: %s", created),
      "api_version: 1.0",
      "user: {}"), file.path(staging, "data.txt"))
    if (!file.rename(staging, dest) && !dir.exists(dest)) {
      stop(serveRless_error(sprintf("push_model: cannot create the pin version '%s'", dest)))
    }
  }
  structure(sprintf("pins://%s/%s@%s", board, name, version), bytes = bytes, version = version,
            pin_hash = hash)
}
