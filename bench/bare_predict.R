# Baseline: score a CSV in one plain Rscript, the way an R user would without any tool.
#   Rscript bare_predict.R MODEL.rds INPUT.csv OUTPUT.csv TYPE
# fread the whole file, predict(), fwrite id + scores. Timed from outside (process start to exit),
# like the tool, so R's start-up and package loading count for both.
suppressPackageStartupMessages({ library(data.table); library(randomForest) })
args <- commandArgs(trailingOnly = TRUE)
data <- fread(args[2], data.table = FALSE)
model <- readRDS(args[1])
scores <- predict(model, newdata = data, type = args[4])
out <- data.table(id = data$id)
if (is.matrix(scores)) out <- cbind(out, as.data.table(scores)) else out$prediction <- unname(scores)
fwrite(out, args[3])
