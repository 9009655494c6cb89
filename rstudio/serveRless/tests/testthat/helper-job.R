# A small R job in a temporary directory: 600 rows, a glm saved with saveRDS(), a job file.
# `ids` replaces the first ids (e.g. "" or "NA"); `output` names the output (its extension
# chooses CSV, JSONL or Parquet).
make_job <- function(dir = tempfile("serveRless-"), scorer = NULL, extra = character(0),
                     ids = character(0), output = "out/scores.csv") {
  dir.create(dir, recursive = TRUE)
  set.seed(3)
  rows <- data.frame(id = sprintf("%05d", 1:600), x = round(rnorm(600), 6),
                     group = sample(c("a", "b"), 600, TRUE), stringsAsFactors = FALSE)
  rows$id[seq_along(ids)] <- ids
  # Ids unquoted, as most exports write them: an empty id is an empty field, "NA" is the text NA.
  utils::write.csv(rows, file.path(dir, "data.csv"), row.names = FALSE, quote = FALSE)
  train <- rows
  train$y <- as.integer(train$x + (train$group == "a") + rnorm(600) > 0.5)
  train$group <- factor(train$group)
  model <- glm(y ~ x + group, data = train, family = binomial)
  saveRDS(model, file.path(dir, "model.rds"))
  lines <- c('name = "testthat-job"', 'runtime = "r"', 'model = "model.rds"', 'input = "data.csv"',
             sprintf('output = "%s"', output), 'id_columns = ["id"]', "max_parallel = 2",
             "retries = 0",
             if (is.null(scorer)) 'predict_args = { type = "response" }' else sprintf('scorer = "%s"', scorer),
             if (!any(startsWith(extra, "chunks"))) "chunks = 3", extra)
  writeLines(lines, file.path(dir, "score.toml"))
  list(dir = dir, job = file.path(dir, "score.toml"), model = model, rows = rows)
}

# Poll `condition()` until it is TRUE or `timeout` seconds passed; TRUE if it became TRUE.
wait_until <- function(condition, timeout = 30, every = 0.2) {
  deadline <- Sys.time() + timeout
  repeat {
    if (isTRUE(condition())) return(TRUE)
    if (Sys.time() > deadline) return(FALSE)
    Sys.sleep(every)
  }
}

# Tests that run jobs need the command line; `R CMD check` run by hand without it on PATH (or
# SERVERLESS_SCORE_CLI) skips them. The pytest driver (tests/r) sets it and allows no skip.
skip_without_cli <- function() {
  if (inherits(try(find_cli(), silent = TRUE), "try-error")) {
    skip("the serverless-score command line is not installed (set SERVERLESS_SCORE_CLI)")
  }
}
