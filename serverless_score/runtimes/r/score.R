# serverless-score's R scorer: scores CSV records with an R model for the Python runner.
#
# The runner starts it once per worker (`Rscript score.R`), so the model is read once and every
# task of the worker is scored by the same R process. Runner and R talk in frames on stdin/stdout
# (serverless_score/runner/r_protocol.py describes them):
#   runner -> R:  TASK (task id, CSV header) . FILE (a file of header + whole CSV records) or
#                 ROWS (the records themselves) ... . DONE . QUIT
#   R -> runner:  REDY (model loaded) . COLS (scores of one batch, column by column) .
#                 FAIL (message, hint, permanent) . DONE (end of task, also after a FAIL)
# The id columns are not sent back: the runner reads them from the records it sent (as the exact
# text of the input), so R reads them only when the model or the user's score() may use them.
# Scores go back as binary columns, doubles as their 8 IEEE bytes: fwrite() keeps only 15
# significant digits and sprintf("%.17g") costs more than a glm's whole prediction, while the
# runner writes each double as the shortest text that reads back to the same double.
# Everything R prints (print, cat, message, warnings) goes to stderr, which is the task log, so a
# user's score() cannot corrupt the frames on stdout.
#
# Environment: MODEL_PATH; SCORER ("predict" or the path of a score.R defining
# score(model, data) and optionally load_model(path)); ID_COLUMNS (JSON array); PREDICT_ARGS
# (JSON object of extra predict() arguments); ON_UNKNOWN_LEVEL ("error" or "na"); ON_ERROR
# ("fail", or "skip": a batch's rows that cannot be scored are left out of its COLS and listed
# in its "failed" key, found by bisection; see score_skipping).
# Per task, TASK_ID, TASK_INDEX, ATTEMPT and INPUT_PATH are set before the user's code runs.

# The byte-code JIT would compile this script's functions as they are first called: ~0.4 s of a
# worker's start-up, for glue whose work happens in C (fread, predict, writeBin). The runner
# turns it off with R_ENABLE_JIT=0 (then R does not load the compiler package at all).
if (Sys.getenv("R_ENABLE_JIT") != "0") invisible(compiler::enableJIT(0L))

# -- errors ---------------------------------------------------------------------------------
# A score_error is what the user sees: a message naming what is wrong, a hint, and whether running
# the task again could help (a missing package or an unseen factor level cannot heal).
score_error <- function(message, hint = "", permanent = TRUE) {
  structure(class = c("score_error", "error", "condition"),
            list(message = message, call = NULL, hint = hint, permanent = permanent))
}

fail <- function(message, hint = "", permanent = TRUE) {
  stop(score_error(message, hint, permanent))
}

install_hint <- function(pkg) {
  sprintf(paste0("Install it: apt-get install r-cran-%s (Debian/Ubuntu) or ",
                 "install.packages(\"%s\") in R, on every machine that scores."), tolower(pkg), pkg)
}

# jsonlite may be the package that is missing, so error frames are written without it.
json_string <- function(x) {
  x <- enc2utf8(as.character(x))
  x <- gsub("\\", "\\\\", x, fixed = TRUE)
  x <- gsub("\"", "\\\"", x, fixed = TRUE)
  x <- gsub("\n", "\\n", x, fixed = TRUE)
  x <- gsub("\r", "\\r", x, fixed = TRUE)
  x <- gsub("\t", "\\t", x, fixed = TRUE)
  x <- gsub("[[:cntrl:]]", " ", x)
  paste0("\"", x, "\"")
}

json_array <- function(x) paste0("[", paste(vapply(x, json_string, ""), collapse = ","), "]")

# -- frames -----------------------------------------------------------------------------------
HEADER_BYTES <- 32L

read_exactly <- function(con, n) {
  if (n == 0) return(raw(0))
  parts <- list()
  got <- 0
  while (got < n) {
    block <- readBin(con, "raw", n - got)
    if (length(block) == 0L) stop("the runner closed stdin in the middle of a frame")
    parts[[length(parts) + 1L]] <- block
    got <- got + length(block)
  }
  if (length(parts) == 1L) parts[[1L]] else do.call(c, parts)
}

read_frame <- function(con) {
  head <- readBin(con, "raw", HEADER_BYTES)
  if (length(head) == 0L) return(list(verb = "QUIT"))  # the runner went away: exit quietly
  if (length(head) < HEADER_BYTES) head <- c(head, read_exactly(con, HEADER_BYTES - length(head)))
  fields <- strsplit(trimws(rawToChar(head)), " +")[[1L]]
  list(verb = fields[1L], count = as.numeric(fields[2L]),
       payload = read_exactly(con, as.numeric(fields[3L])))
}

write_frame <- function(con, verb, blobs = list(), count = 0) {
  size <- sum(vapply(blobs, length, 0))
  writeBin(charToRaw(sprintf("%-4s %12.0f %13.0f\n", verb, count, size)), con)
  for (blob in blobs) writeBin(blob, con)
  flush(con)
}

send_fail <- function(con, err) {
  permanent <- if (is.null(err$permanent)) TRUE else isTRUE(err$permanent)
  hint <- if (is.null(err$hint)) "" else err$hint
  message("serverless-score: ", conditionMessage(err), if (nzchar(hint)) paste0("\n  hint: ", hint))
  body <- sprintf("{\"message\":%s,\"hint\":%s,\"permanent\":%s}", json_string(conditionMessage(err)),
                  json_string(hint), if (permanent) "true" else "false")
  write_frame(con, "FAIL", list(charToRaw(enc2utf8(body))))
}

# -- the model ------------------------------------------------------------------------------------
# S3 classes do not record their package, so predict() would not find predict.randomForest after a
# bare readRDS(). Known classes map to their package; S4 classes carry it in attr(class, "package").
CLASS_PACKAGES <- c(
  randomForest = "randomForest", ranger = "ranger", glmnet = "glmnet", cv.glmnet = "glmnet",
  elnet = "glmnet", lognet = "glmnet", multnet = "glmnet", fishnet = "glmnet", coxnet = "glmnet",
  mrelnet = "glmnet", gbm = "gbm", svm = "e1071", naiveBayes = "e1071", xgb.Booster = "xgboost",
  lgb.Booster = "lightgbm", train = "caret", rpart = "rpart", nnet = "nnet", multinom = "nnet",
  gam = "mgcv", bam = "mgcv", earth = "earth", ksvm = "kernlab", lda = "MASS", qda = "MASS",
  polr = "MASS", glm.nb = "MASS", rlm = "MASS", coxph = "survival", survreg = "survival",
  lmerMod = "lme4", glmerMod = "lme4", model_fit = "parsnip", workflow = "workflows"
)

model_packages <- function(model) {
  cls <- class(model)
  pkgs <- c(attr(cls, "package"), unname(CLASS_PACKAGES[intersect(cls, names(CLASS_PACKAGES))]))
  setdiff(unique(pkgs), c(".GlobalEnv", "base", "stats"))
}

load_model_packages <- function(model) {
  pkgs <- model_packages(model)
  for (pkg in pkgs) {
    if (!requireNamespace(pkg, quietly = TRUE)) {
      fail(sprintf("the model is a '%s' object, which needs the R package '%s'; it is not installed",
                   class(model)[1L], pkg), install_hint(pkg))
    }
  }
  pkgs
}

predict_method <- function(model) {
  if (isS4(model)) return(if (methods::hasMethod("predict", class(model))) function(object, newdata, ...) NULL)
  for (cl in class(model)) {
    method <- utils::getS3method("predict", cl, optional = TRUE)
    if (!is.null(method)) return(method)
  }
  NULL
}

# The argument that takes the new data: newdata for most methods, newx for glmnet (a matrix),
# data for ranger.
data_argument <- function(method) {
  formals <- names(formals(method))
  for (arg in c("newdata", "newx", "data", "x")) if (arg %in% formals) return(arg)
  "newdata"
}

read_model <- function(path, user) {
  if (!nzchar(path) || !file.exists(path)) fail(sprintf("model: '%s' does not exist", path))
  if (!is.null(user$load_model)) {
    return(tryCatch(user$load_model(path), error = function(e) {
      fail(sprintf("load_model('%s') in %s failed: %s", path, user$path, conditionMessage(e)),
           if (inherits(e, "packageNotFoundError")) install_hint(e$package) else "")
    }))
  }
  tryCatch(readRDS(path), error = function(e) {
    fail(sprintf("model: cannot read '%s' as an R object (readRDS: %s)", path, conditionMessage(e)),
         "Save the model with saveRDS(model, \"model.rds\") and check the file was copied whole.")
  })
}

# What the model knows about its columns: factor levels seen in training, which columns are
# numbers, and for glmnet the columns of its matrix. Unknown model kinds give empty answers.
model_columns <- function(model) {
  info <- list(levels = list(), ordered = character(0), numeric = character(0), matrix = NULL)
  if (!is.list(model)) return(info)
  if (inherits(model, "randomForest") && !is.null(model$forest$ncat)) {
    ncat <- model$forest$ncat
    info$levels <- model$forest$xlevels[ncat > 1]
    info$numeric <- names(ncat)[ncat == 1]
  } else if (inherits(model, "ranger")) {
    levels <- model$forest$covariate.levels
    info$levels <- levels[!vapply(levels, is.null, logical(1))]
    info$ranger_vars <- model$forest$independent.variable.names
  } else if (inherits(model, c("glmnet", "cv.glmnet"))) {
    fit <- if (inherits(model, "cv.glmnet")) model$glmnet.fit else model
    beta <- if (is.list(fit$beta)) fit$beta[[1L]] else fit$beta  # multinomial: one per class
    info$matrix <- rownames(beta)
  }
  if (is.list(model$xlevels)) info$levels <- model$xlevels  # lm, glm and most stats-like models
  classes <- attr(model$terms, "dataClasses")
  if (!is.null(classes)) {
    info$numeric <- union(info$numeric, names(classes)[classes == "numeric"])
    info$ordered <- names(classes)[classes == "ordered"]
  }
  info
}

# The input columns predict() may read, or NULL when the model does not say (then R reads every
# column). Only used to skip reading id columns that no variable of the model refers to: text ids
# are the costliest columns to read (a string each), and the runner carries them anyway.
model_variables <- function(model, info) {
  if (!is.null(info$matrix)) return(info$matrix)
  if (!is.null(info$ranger_vars)) return(info$ranger_vars)
  if (!is.list(model)) return(NULL)
  if (inherits(model$terms, "terms")) {
    vars <- all.vars(stats::delete.response(model$terms))
    return(if ("." %in% vars) NULL else vars)
  }
  if (inherits(model, "randomForest") && !is.null(rownames(model$importance))) {
    return(rownames(model$importance))
  }
  NULL
}

# -- the user's scorer ------------------------------------------------------------------------------
load_user_scorer <- function(path) {
  env <- new.env(parent = globalenv())
  tryCatch(sys.source(path, envir = env, keep.source = FALSE), error = function(e) {
    fail(sprintf("scorer: %s failed while loading: %s", path, conditionMessage(e)),
         if (inherits(e, "packageNotFoundError")) install_hint(e$package) else "")
  })
  if (!is.function(env$score)) {
    fail(sprintf("scorer: %s defines no function score(model, data)", path),
         "Define score <- function(model, data) returning one value or row per row of data.")
  }
  load <- if (is.function(env$load_model)) env$load_model else NULL
  list(path = path, score = env$score, load_model = load)
}

# -- one session: the model and the settings ---------------------------------------------------------
start_session <- function() {
  for (pkg in c("data.table", "jsonlite")) {
    if (!requireNamespace(pkg, quietly = TRUE)) {
      fail(sprintf("the R package '%s' is not installed (the R scorer of serverless-score needs it)",
                   pkg), install_hint(pkg))
    }
  }
  threads <- suppressWarnings(as.integer(Sys.getenv("OMP_NUM_THREADS", "")))
  if (!is.na(threads) && threads > 0) data.table::setDTthreads(threads)
  scorer <- Sys.getenv("SCORER", "predict")
  user <- if (scorer != "predict") load_user_scorer(scorer) else NULL
  model <- read_model(Sys.getenv("MODEL_PATH"), user)
  packages <- load_model_packages(model)
  method <- predict_method(model)
  if (is.null(user) && is.null(method)) {
    fail(sprintf("predict: there is no predict() method for a model of class '%s'",
                 paste(class(model), collapse = "', '")),
         "Write a score.R that loads the model's package (library(pkg)) and calls its predict().")
  }
  policy <- Sys.getenv("ON_UNKNOWN_LEVEL", "error")
  args <- jsonlite::fromJSON(Sys.getenv("PREDICT_ARGS", "{}"), simplifyVector = TRUE)
  columns <- model_columns(model)
  id_columns <- as.character(jsonlite::fromJSON(Sys.getenv("ID_COLUMNS", "[]")))
  # A user's score() may read any column; predict() only the model's variables, when known.
  vars <- if (is.null(user)) model_variables(model, columns) else NULL
  list(model = model, user = user, columns = columns, packages = packages,
       data_arg = if (is.null(method)) "newdata" else data_argument(method),
       id_columns = id_columns,
       skip_columns = if (is.null(vars)) character(0) else setdiff(id_columns, vars),
       predict_args = if (length(args)) args else list(), policy = policy,
       skip = identical(Sys.getenv("ON_ERROR", "fail"), "skip"))
}

# Whether this R can open the memory files the runner shares (SERVERLESS_SCORE_BATCH_FILES):
# if not, the runner sends the records in ROWS frames instead of FILE frames.
batch_files_ok <- function() {
  paths <- strsplit(Sys.getenv("SERVERLESS_SCORE_BATCH_FILES"), ",", fixed = TRUE)[[1L]]
  length(paths) > 0L && all(file.exists(paths))
}

ready_info <- function(session) {
  sprintf("{\"r\":%s,\"model_class\":%s,\"packages\":%s,\"files\":%s}",
          json_string(paste(R.version$major, R.version$minor, sep = ".")),
          json_string(class(session$model)[1L]), json_array(session$packages),
          if (batch_files_ok()) "true" else "false")
}

# -- one task ----------------------------------------------------------------------------------------
new_task <- function(session, payload) {
  info <- jsonlite::fromJSON(rawToChar(payload))
  Sys.setenv(TASK_ID = info$task_id, TASK_INDEX = info$task_index, ATTEMPT = info$attempt,
             INPUT_PATH = info$input_path)
  task <- new.env()
  task$id <- info$task_id
  task$header <- charToRaw(paste0(info$header, "\n"))
  task$names <- names(data.table::fread(text = paste0(info$header, "\n"), header = TRUE, nrows = 0L))
  task$rows_done <- 0
  task$failed <- FALSE
  missing <- setdiff(session$id_columns, task$names)
  if (length(missing)) {
    task$setup_error <- score_error(
      sprintf("id_columns: %s not in the input's columns (%s)", paste(missing, collapse = ", "),
              paste(task$names, collapse = ", ")))
  }
  task
}

# The batch goes through a file in memory (tmpfs): fread(text = rawToChar(...)) costs ~3x more,
# rawToChar alone ~80 ms per 8 MB. The file is removed as soon as it is read; one left by an R
# that was killed while reading (a timeout) is removed by the next R that starts here.
batch_file <- local({
  dir <- if (dir.exists("/dev/shm") && file.access("/dev/shm", 2L) == 0L) "/dev/shm" else tempdir()
  if (dir.exists("/proc/self")) {
    stale <- list.files(dir, pattern = "^serverless-score-batch-[0-9]+[.]csv$", full.names = TRUE)
    pids <- sub("^serverless-score-batch-([0-9]+)[.]csv$", "\\1", basename(stale))
    unlink(stale[!dir.exists(file.path("/proc", pids))])
  }
  file.path(dir, sprintf("serverless-score-batch-%d.csv", Sys.getpid()))
})

# A ROWS frame's records, written to batch_file with the header for fread.
rows_file <- function(task, payload) {
  con <- file(batch_file, "wb")
  writeBin(task$header, con)
  writeBin(payload, con)
  close(con)
  batch_file
}

# fread a batch file (header + records). Id columns no model variable refers to are skipped
# (unless nothing else would be left: fread needs a column to count rows).
read_rows <- function(session, task, path) {
  skip <- intersect(session$skip_columns, task$names)
  if (length(skip) == length(task$names)) skip <- character(0)
  text <- setdiff(intersect(c(session$id_columns, names(session$columns$levels)), task$names), skip)
  read <- function(na) data.table::fread(
    path, header = TRUE, sep = ",", drop = if (length(skip)) skip else NULL,
    colClasses = if (length(text)) list(character = text) else NULL,
    na.strings = na, showProgress = FALSE, data.table = FALSE
  )
  if (!length(text) && is.null(session$user) &&
      all(setdiff(task$names, skip) %in% session$columns$numeric)) {
    data <- read_numeric(task, path, read)
    if (!is.null(data)) return(data)
  }
  data <- read(c("", "NA"))
  # fread (1.14) keeps the doubled quotes of a quoted field ("say ""hi""" gives say ""hi"");
  # a bare field cannot hold a quote in valid CSV, so un-doubling every text column is safe.
  for (name in names(data)[vapply(data, is.character, logical(1))]) {
    values <- data[[name]]
    doubled <- grepl("\"\"", values, fixed = TRUE)
    if (any(doubled)) data[[name]][doubled] <- gsub("\"\"", "\"", values[doubled], fixed = TRUE)
  }
  data
}

# Tokens that mean "no number" in numeric columns. A numeric column holding one of them would be
# bumped by fread to text: read again as strings (a string per value), then turned back into
# numbers by conform(): the read of such a batch took ~2x the clean read. So a batch whose columns
# are all numbers to the model is first read with these tokens as NA; the rows with an NA (few, or
# the plain read is used) are then looked up in the batch's raw text, and the tokens found (an
# empty field or NA scores as NA, as before) are attached as attr(data, "not_numbers") for
# conform(), which treats them as it treats the text fread would have read. A clean batch pays
# the tokens (fread compares fields with them: ~0.5 ms each per 32 MB) and one anyNA per column,
# ~5 ms of a ~75 ms read: a few common tokens only; a batch with another text takes the plain
# read, correct as before, only slower.
NA_TOKENS <- c("n/a", "N/A", "NULL", "null", "-")
NA_ROWS_MAX <- 20000L  # more rows with an NA than this: the plain read is cheaper

read_numeric <- function(task, path, read) {
  data <- read(c("", "NA", NA_TOKENS))
  if (!all(vapply(data, is.numeric, logical(1)))) return(NULL)  # other text: the plain read
  gaps <- which(vapply(data, anyNA, logical(1)))
  if (!length(gaps)) return(data)
  rows <- sort(unique(unlist(lapply(data[gaps], function(v) which(is.na(v))), use.names = FALSE)))
  if (length(rows) > NA_ROWS_MAX) return(NULL)
  # Records are lines here: a quoted field holding a newline would make fread's numeric columns
  # text (plain read above) or, in a dropped id column, add a line (count below). Each looked-up
  # line is also checked against what fread read from it; any doubt means the plain read.
  bytes <- readBin(path, "raw", file.info(path)$size)
  ends <- grepRaw("\n", bytes, fixed = TRUE, all = TRUE)
  if (!length(ends) || ends[length(ends)] != length(bytes)) ends <- c(ends, length(bytes) + 1L)
  if (length(ends) != nrow(data) + 1L) return(NULL)
  lines <- vapply(rows, function(i) {
    from <- ends[i] + 1L
    to <- ends[i + 1L] - 1L
    if (to < from) "" else rawToChar(bytes[from:to])
  }, "")
  if (any(grepl("\"", lines, fixed = TRUE))) return(NULL)
  # strsplit drops a trailing empty field: pad with one more comma, then drop the last piece
  fields <- lapply(strsplit(paste0(sub("\r$", "", lines), ","), ",", fixed = TRUE), trimws)
  if (any(lengths(fields) != length(task$names))) return(NULL)
  at <- match(names(data), task$names)
  found <- list()
  for (j in seq_along(data)) {
    raw <- vapply(fields, `[`, "", at[j])
    value <- data[[j]][rows]
    numbers <- suppressWarnings(as.numeric(raw))
    if (!isTRUE(all.equal(numbers[!is.na(value)], as.numeric(value[!is.na(value)])))) return(NULL)
    bad <- is.na(value) & !is.nan(value) & !(raw %in% c("", "NA"))  # fread reads NaN as NaN
    if (any(bad)) found[[names(data)[j]]] <- list(rows = rows[bad], values = raw[bad])
  }
  if (length(found)) attr(data, "not_numbers") <- found
  data
}

record_of <- function(task, row) format(task$rows_done + row, scientific = FALSE)

# Factor columns get exactly the model's training levels (a level never seen in training is an
# error, or NA with on_unknown_level = "na"); columns the model saw as numbers become numbers.
conform <- function(session, task, data) {
  info <- session$columns
  unknown <- logical(nrow(data))
  # on_error = "skip": rows with a value the model cannot take are marked here (vectorised, no
  # predict() call needed to find them) with the reason, instead of failing the batch.
  rejected <- rep(NA_character_, nrow(data))
  for (name in intersect(names(info$levels), names(data))) {
    values <- as.character(data[[name]])
    known <- info$levels[[name]]
    bad <- !is.na(values) & !(values %in% known)
    if (any(bad) && session$skip && session$policy != "na") {
      rejected[bad & is.na(rejected)] <- sprintf(
        "column '%s': level '%s' was not seen when the model was trained", name, values[bad & is.na(rejected)])
      values[bad] <- NA
    } else if (any(bad)) {
      if (session$policy != "na") {
        unseen <- unique(values[bad])
        fail(sprintf(paste0("column '%s': level %s (%d row(s), first at record %s of task %s) ",
                            "was not seen when the model was trained; known levels: %s"),
                     name, paste0("'", head(unseen, 5L), "'", collapse = ", "), sum(bad),
                     record_of(task, which(bad)[1L]), task$id,
                     paste(head(known, 20L), collapse = ", ")),
             "Fix the input, or set on_unknown_level = \"na\" to score such rows as NA.")
      }
      values[bad] <- NA
      unknown <- unknown | bad
    }
    data[[name]] <- factor(values, levels = known, ordered = name %in% info$ordered)
  }
  not_numbers <- attr(data, "not_numbers")  # from read_numeric: the column is numbers already
  for (name in intersect(info$numeric, names(data))) {
    values <- data[[name]]
    if (is.numeric(values)) {
      found <- not_numbers[[name]]
      if (is.null(found)) next
      bad <- logical(nrow(data))
      bad[found$rows] <- TRUE
      values <- rep(NA_character_, nrow(data))  # only the bad rows' text is read below
      values[found$rows] <- found$values
      numbers <- data[[name]]
    } else {
      numbers <- suppressWarnings(as.numeric(as.character(values)))
      bad <- is.na(numbers) & !is.na(values)
    }
    if (any(bad) && session$skip) {
      rejected[bad & is.na(rejected)] <- sprintf(
        "column '%s': '%s' is not a number (the model was trained on numbers)", name,
        values[bad & is.na(rejected)])
    } else if (any(bad)) {
      fail(sprintf("column '%s': the model was trained on numbers but record %s of task %s has '%s'",
                   name, record_of(task, which(bad)[1L]), task$id, values[which(bad)[1L]]))
    }
    data[[name]] <- numbers
  }
  if (inherits(session$model, "ranger") && length(info$levels) == 0L) {
    text <- intersect(info$ranger_vars, names(data)[vapply(data, is.character, logical(1))])
    if (length(text)) {
      fail(sprintf(paste0("column '%s' is text, but this ranger model does not record its factor ",
                          "levels, so ranger would number the levels by what each batch holds"),
                   text[1L]),
           "Train with ranger(..., respect.unordered.factors = \"order\"), or encode it as numbers.")
    }
  }
  list(data = data, unknown = unknown, rejected = rejected)
}

glmnet_matrix <- function(session, data) {
  vars <- session$columns$matrix
  missing <- setdiff(vars, names(data))
  if (length(missing)) {
    fail(sprintf("input: the glmnet model takes a matrix with columns %s; the input lacks %s",
                 paste(head(vars, 10L), collapse = ", "), paste(head(missing, 10L), collapse = ", ")),
         paste0("glmnet scores a numeric matrix: write one CSV column per column of the training ",
                "matrix, named as colnames(x) (V1, V2, ... if x had none); expand factors with ",
                "model.matrix() before writing the CSV."))
  }
  text <- vars[!vapply(data[vars], function(v) is.numeric(v) || is.logical(v), logical(1))]
  if (length(text)) {
    fail(sprintf("input: glmnet needs numbers, but column '%s' holds text", text[1L]),
         "Expand factors into 0/1 columns (model.matrix) as for training.")
  }
  as.matrix(data[vars])
}

# A score column as a plain vector. Vectors from predict() carry row names ("1", "2", ...):
# as.vector() would duplicate those before dropping them (a third of a glm's scoring time),
# c(use.names = FALSE) copies only the values.
plain <- function(v) {
  if (is.factor(v)) return(as.character(v))
  if (inherits(v, c("Date", "POSIXt"))) return(format(v))
  if (is.atomic(v)) return(c(v, use.names = FALSE))
  v
}

# A named list of score columns, one value per input row: vectors become `name`, matrices and
# data.frames keep their column names; lists from predict() give their predictions / fit.
as_columns <- function(x, n, name, what) {
  if (inherits(x, "ranger.prediction")) x <- x$predictions
  if (is.list(x) && !is.data.frame(x) && !is.null(x$fit)) {
    fit <- as_columns(x$fit, n, "fit", what)
    if (!is.null(x$se.fit)) fit$se.fit <- plain(x$se.fit)
    return(fit)
  }
  if (is.array(x) && length(dim(x)) == 3L) {
    if (dim(x)[3L] != 1L) {
      fail(sprintf("%s returned a %s array; pick one slice (e.g. predict_args = { s = 0.01 })",
                   what, paste(dim(x), collapse = " x ")))
    }
    x <- matrix(x, nrow = dim(x)[1L], dimnames = list(NULL, dimnames(x)[[2L]]))
  }
  if (is.data.frame(x)) {
    out <- lapply(x, plain)
  } else if (is.matrix(x)) {
    labels <- colnames(x)
    if (is.null(labels)) labels <- if (ncol(x) == 1L) name else paste0(name, "_", seq_len(ncol(x)))
    dimnames(x) <- NULL
    out <- lapply(seq_len(ncol(x)), function(j) plain(x[, j]))
    names(out) <- labels
  } else if (is.atomic(x) || is.factor(x)) {
    out <- stats::setNames(list(plain(x)), name)
  } else {
    fail(sprintf("%s returned a %s; return a vector, matrix or data.frame with one row per input row",
                 what, class(x)[1L]))
  }
  rows <- unique(vapply(out, length, 0))
  if (length(out) == 0L) fail(sprintf("%s returned no columns", what))
  if (length(rows) != 1L || rows != n) {
    fail(sprintf("%s returned %s rows for %d input rows", what, paste(rows, collapse = "/"), n))
  }
  out
}

predict_rows <- function(session, data, unknown) {
  keep <- !unknown
  # Every column goes to predict(): R models pick their variables by name, and a formula may
  # name an id column (churn ~ . - customer_id).
  newdata <- if (all(keep)) data else data[keep, , drop = FALSE]
  # The call names its arguments by symbol: an error message then quotes `newdata`, not the data.
  env <- new.env()
  env$model <- session$model
  env$newdata <- if (is.null(session$columns$matrix)) newdata else glmnet_matrix(session, newdata)
  arg <- session$data_arg
  call <- as.call(c(list(as.name("predict"), quote(model)),
                    stats::setNames(list(quote(newdata)), arg), session$predict_args))
  result <- tryCatch(eval(call, env), score_error = function(e) stop(e), error = function(e) {
    fail(sprintf("%s failed: %s", paste(deparse(call, width.cutoff = 200L), collapse = " "),
                 conditionMessage(e)),
         "Check that the input has the columns and types the model was trained with.")
  })
  out <- as_columns(result, nrow(newdata), "prediction", "predict()")
  if (!all(keep)) {  # rows with an unseen level: NA in every score column
    index <- rep(NA_integer_, length(keep))
    index[keep] <- seq_len(sum(keep))
    out <- lapply(out, `[`, index)
  }
  out
}

score_user <- function(session, data) {
  score <- session$user$score  # so that R's message says score(model, data)
  model <- session$model
  result <- tryCatch(score(model, data), error = function(e) {
    hint <- if (inherits(e, "packageNotFoundError")) install_hint(e$package) else
      sprintf("The error was raised by score() in %s.", session$user$path)
    call <- conditionCall(e)
    where <- if (is.null(call)) "score()" else deparse(call, nlines = 1L)[1L]
    fail(sprintf("R error in %s: %s", where, conditionMessage(e)), hint,
         permanent = inherits(e, "packageNotFoundError"))
  })
  as_columns(result, nrow(data), "score", "score()")
}

encode_column <- function(x, name) {
  if (is.factor(x)) x <- as.character(x)
  if (inherits(x, c("Date", "POSIXt"))) x <- format(x)
  if (is.logical(x)) x <- ifelse(x, "TRUE", "FALSE")
  if (is.double(x)) {
    list(type = "double", blob = writeBin(as.double(x), raw(), size = 8L, endian = "little"))
  } else if (is.integer(x)) {
    list(type = "integer", blob = writeBin(as.vector(x), raw(), size = 4L, endian = "little"))
  } else if (is.character(x)) {
    # NUL-terminated, as writeBin writes text (fast, in C); NA travels as a flag
    list(type = "string", blob = c(as.raw(is.na(x)), writeBin(enc2utf8(as.vector(x)), raw())))
  } else {
    fail(sprintf("score column '%s' is a %s, which cannot be written; return numbers, text, factors or logicals",
                 name, class(x)[1L]))
  }
}

# SERVERLESS_SCORE_R_TIMING=1 logs where each batch's time goes (read / score / encode).
TIMING <- nzchar(Sys.getenv("SERVERLESS_SCORE_R_TIMING"))
clock <- function() proc.time()[["elapsed"]]

score_rows <- function(session, task, path, count) {
  started <- clock()
  data <- read_rows(session, task, path)
  read_at <- clock()
  if (nrow(data) != count) {
    fail(sprintf("task %s: R read %d rows where the runner sent %d records (malformed CSV?)",
                 task$id, nrow(data), count))
  }
  conformed <- conform(session, task, data)
  failed <- NULL
  if (session$skip) {
    skipped <- score_skipping(session, conformed)
    scores <- skipped$scores
    failed <- skipped$failed
  } else {
    scores <- score_part(session, conformed, seq_len(nrow(data)))
  }
  scored_at <- clock()
  clash <- intersect(session$id_columns, names(scores))
  if (length(clash)) fail(sprintf("score columns %s clash with id_columns; rename them",
                                  paste(clash, collapse = ", ")))
  # Named as they will be in the output, after the id columns the runner puts first.
  ids <- length(session$id_columns)
  names(scores) <- make.unique(c(session$id_columns, names(scores)))[ids + seq_along(scores)]
  encoded <- Map(encode_column, scores, names(scores))
  task$rows_done <- task$rows_done + count
  rows <- if (length(scores)) length(scores[[1L]]) else 0L
  meta <- sprintf("{\"rows\":%d,\"columns\":[%s]%s}", rows, paste(vapply(names(encoded), function(n) {
    sprintf("{\"name\":%s,\"type\":\"%s\",\"bytes\":%.0f}", json_string(n), encoded[[n]]$type,
            length(encoded[[n]]$blob))
  }, ""), collapse = ","), failed_json(failed))
  meta <- charToRaw(enc2utf8(meta))
  if (TIMING) {
    message(sprintf("R batch of %d rows: read %.3fs, score %.3fs, encode %.3fs", nrow(data),
                    read_at - started, scored_at - read_at, clock() - scored_at))
  }
  list(meta = meta, blobs = c(list(meta), lapply(encoded, `[[`, "blob")))
}

# Rows of a data.frame, column by column: `[.data.frame` spends twice as long on row names.
take_rows <- function(data, rows) {
  out <- lapply(data, function(v) v[rows])
  attributes(out) <- list(names = names(data), class = "data.frame",
                          row.names = .set_row_names(length(rows)))
  out
}

# The scores of rows `rows` (indices into the batch) as a named list of columns.
score_part <- function(session, conformed, rows) {
  data <- conformed$data
  whole <- length(rows) == nrow(data)
  part <- if (whole) data else take_rows(data, rows)
  if (is.null(session$user)) {
    predict_rows(session, part, conformed$unknown[rows])
  } else {
    score_user(session, part)
  }
}

# on_error = "skip": the rows conform() rejected are out; the others are scored in one call and,
# if that fails, in halves until single rows (so one bad row costs about log2(rows) calls).
# Returns the good rows' scores in input order and the failed rows (0-based) with their reasons.
score_skipping <- function(session, conformed) {
  n <- nrow(conformed$data)
  rejected <- which(!is.na(conformed$rejected))
  bad <- rejected
  reasons <- conformed$rejected[rejected]
  pieces <- list()
  stack <- list(if (length(rejected)) seq_len(n)[-rejected] else seq_len(n))
  while (length(stack)) {
    rows <- stack[[length(stack)]]
    stack[[length(stack)]] <- NULL
    if (!length(rows)) next
    result <- tryCatch(score_part(session, conformed, rows), error = function(e) e)
    if (!inherits(result, "error")) {
      pieces[[length(pieces) + 1L]] <- list(rows = rows, scores = result)
    } else if (length(rows) == 1L) {
      bad <- c(bad, rows)
      reasons <- c(reasons, conditionMessage(result))
      if (!length(pieces) && length(bad) - length(rejected) >= 64L) {
        # nothing scores: the fault is in the model or the columns, not in some rows
        fail(sprintf("every row tried fails (%d in a row), so the fault is not in the rows: %s",
                     length(bad) - length(rejected), conditionMessage(result)))
      }
    } else {
      half <- length(rows) %/% 2L
      stack[[length(stack) + 1L]] <- rows[(half + 1L):length(rows)]
      stack[[length(stack) + 1L]] <- rows[seq_len(half)]
    }
  }
  scores <- list()
  if (length(pieces) == 1L) {
    scores <- pieces[[1L]]$scores
  } else if (length(pieces) > 1L) {
    order_of <- order(unlist(lapply(pieces, `[[`, "rows"), use.names = FALSE))
    for (name in names(pieces[[1L]]$scores)) {
      scores[[name]] <- unlist(lapply(pieces, function(p) p$scores[[name]]),
                               use.names = FALSE)[order_of]
    }
  }
  keep <- order(bad)
  list(scores = scores, failed = list(rows = bad[keep] - 1L, reasons = reasons[keep]))
}

failed_json <- function(failed) {
  if (is.null(failed) || !length(failed$rows)) return("")
  items <- sprintf("{\"row\":%.0f,\"error\":%s}", failed$rows,
                   vapply(failed$reasons, json_string, ""))
  sprintf(",\"failed\":[%s]", paste(items, collapse = ","))
}

score_batch <- function(session, task, frame) {
  if (frame$verb == "FILE") return(score_rows(session, task, rawToChar(frame$payload), frame$count))
  on.exit(unlink(batch_file), add = TRUE)
  score_rows(session, task, rows_file(task, frame$payload), frame$count)
}

# Warnings (rank-deficient fits, coercions...) go to the task log and never stop scoring.
log_warnings <- function(expr) {
  withCallingHandlers(expr, warning = function(w) {
    message("R warning: ", conditionMessage(w))
    invokeRestart("muffleWarning")
  })
}

# -- main loop -----------------------------------------------------------------------------------------
main <- function() {
  input <- file("stdin", open = "rb")
  output <- file("/dev/stdout", open = "wb", raw = TRUE)
  sink(stderr())  # from here on, anything printed goes to the log, never into the frames
  session <- tryCatch(log_warnings(start_session()), error = function(e) {
    send_fail(output, e)
    NULL
  })
  if (is.null(session)) return(invisible())
  write_frame(output, "REDY", list(charToRaw(enc2utf8(ready_info(session)))))
  task <- NULL
  repeat {
    frame <- read_frame(input)
    if (frame$verb == "QUIT") break
    if (frame$verb == "TASK") {
      task <- tryCatch(new_task(session, frame$payload), error = function(e) {
        failed <- new.env()
        failed$setup_error <- e
        failed
      })
      if (!is.null(task$setup_error)) {
        send_fail(output, task$setup_error)
        task$failed <- TRUE
      }
    } else if (frame$verb %in% c("FILE", "ROWS")) {
      if (task$failed) next  # the task already failed: skip its records until DONE
      answer <- tryCatch(log_warnings(score_batch(session, task, frame)), error = function(e) e)
      if (inherits(answer, "error")) {
        send_fail(output, answer)
        task$failed <- TRUE
      } else {
        write_frame(output, "COLS", answer$blobs, count = length(answer$meta))
      }
    } else if (frame$verb == "DONE") {
      write_frame(output, "DONE")
      task <- NULL
    } else {
      stop("unexpected frame from the runner: ", frame$verb)
    }
  }
  invisible()
}

main()
