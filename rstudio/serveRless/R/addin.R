#' RStudio addin "Run batch scoring job": runs the job file of the open project.
#'
#' The project is RStudio's open project when rstudioapi is installed and RStudio runs, else the
#' working directory; its job file is `score.toml`, else `job.toml`, else its only `.toml` file.
#' @param dir Where to look for the job file (default: the open project).
#' @export
run_job_addin <- function(dir = project_dir()) {
  job <- find_job_file(dir)
  message("serverless-score: running ", job)
  invisible(score_job(job))
}

project_dir <- function() {
  if (requireNamespace("rstudioapi", quietly = TRUE) && rstudioapi::isAvailable()) {
    project <- rstudioapi::getActiveProject()
    if (!is.null(project)) return(project)
  }
  getwd()
}

find_job_file <- function(dir) {
  for (name in c("score.toml", "job.toml")) {
    path <- file.path(dir, name)
    if (file.exists(path)) return(path)
  }
  candidates <- list.files(dir, pattern = "\\.toml$", full.names = TRUE)
  if (length(candidates) == 1L) return(candidates)
  stop(serveRless_error(sprintf(
    "no job file to run in %s: expected score.toml%s",
    dir, if (length(candidates)) paste0(" (found several: ", paste(basename(candidates), collapse = ", "),
                                         ")") else "")))
}
