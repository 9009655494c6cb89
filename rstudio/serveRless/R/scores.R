#' The merged scores of a finished job, as a data.frame.
#'
#' @param result A result of [score_job()] / [wait_job()], a job handle, or the output's path.
#' @return A data.frame; the job's `id_columns` are read as text, exactly as they were.
#' @export
read_scores <- function(result) {
  if (inherits(result, "serverless_score_job")) result <- wait_job(result, quiet = TRUE)
  path <- if (is.character(result)) result else result$output
  if (is.null(path) || !file.exists(path)) {
    stop(serveRless_error(sprintf("no scores at '%s': the job has not succeeded (status: %s)",
                                  path, if (is.list(result)) result$status else "unknown")))
  }
  manifest <- paste0(path, ".manifest.json")
  ids <- if (file.exists(manifest)) {
    as.character(unlist(jsonlite::fromJSON(manifest)$spec$id_columns))
  } else character(0)
  if (requireNamespace("data.table", quietly = TRUE)) {
    return(data.table::fread(path, colClasses = if (length(ids)) list(character = ids),
                             na.strings = "", data.table = FALSE, showProgress = FALSE))
  }
  utils::read.csv(path, colClasses = if (length(ids)) stats::setNames(rep("character", length(ids)), ids),
                  na.strings = "", check.names = FALSE, stringsAsFactors = FALSE)
}

#' Save a model with saveRDS() and store it where a job reads it.
#'
#' @param model Any R object (a fitted model).
#' @param uri Where to store it: a local path, `az://CONTAINER/PATH` or an `https://` blob URL.
#'   The model is stored at exactly `uri` (atomically; other content there is replaced, and a job
#'   still running on the old model then fails on its checksum). For versioned, never-replaced
#'   models run `serverless-score models push FILE URI` instead.
#' @return `uri`, invisibly, with attributes `bytes` and `sha256`.
#' @export
push_model <- function(model, uri) {
  file <- tempfile(fileext = ".rds")
  on.exit(unlink(file), add = TRUE)
  saveRDS(model, file)
  out <- processx::run(find_cli(), c("models", "push", file, uri, "--exact", "--overwrite", "--json"), error_on_status = FALSE,
                       env = cli_env())
  stored <- parse_result(out$stdout)
  if (out$status != 0L || is.null(stored$uri)) {
    detail <- if (!is.null(stored$error$message)) stored$error$message else out$stderr
    stop(serveRless_error(sprintf("push_model: storing the model at '%s' failed: %s", uri, detail)))
  }
  invisible(structure(stored$uri, bytes = stored$size, sha256 = stored$sha256))
}
