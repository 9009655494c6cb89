# A small R job in a temporary directory: 600 rows, a glm saved with saveRDS(), a job file.
make_job <- function(dir = tempfile("serveRless-"), scorer = NULL, extra = character(0)) {
  dir.create(dir, recursive = TRUE)
  set.seed(3)
  rows <- data.frame(id = sprintf("%05d", 1:600), x = round(rnorm(600), 6),
                     group = sample(c("a", "b"), 600, TRUE), stringsAsFactors = FALSE)
  utils::write.csv(rows, file.path(dir, "data.csv"), row.names = FALSE)
  train <- rows
  train$y <- as.integer(train$x + (train$group == "a") + rnorm(600) > 0.5)
  train$group <- factor(train$group)
  model <- glm(y ~ x + group, data = train, family = binomial)
  saveRDS(model, file.path(dir, "model.rds"))
  lines <- c('name = "testthat-job"', 'runtime = "r"', 'model = "model.rds"', 'input = "data.csv"',
             'output = "out/scores.csv"', 'id_columns = ["id"]', "max_parallel = 2",
             "retries = 0",
             if (is.null(scorer)) 'predict_args = { type = "response" }' else sprintf('scorer = "%s"', scorer),
             if (!any(startsWith(extra, "chunks"))) "chunks = 3", extra)
  writeLines(lines, file.path(dir, "score.toml"))
  list(dir = dir, job = file.path(dir, "score.toml"), model = model, rows = rows)
}
