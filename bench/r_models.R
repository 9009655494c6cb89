# Trains the R models of bench_r.py on the bench's labelled training CSV and saves them.
#   Rscript r_models.R TRAIN.csv OUT_DIR
# forest: randomForest, 100 trees, on the first 20,000 rows (predict time, not training time,
# is what the bench measures; more rows only make a slower training and a bigger file).
# glm: logistic regression on every training row.
suppressPackageStartupMessages({ library(data.table); library(randomForest) })
args <- commandArgs(trailingOnly = TRUE)
train <- fread(args[1], data.table = FALSE)
train$label <- factor(train$label)
features <- grep("^f[0-9]+$", names(train), value = TRUE)
set.seed(1)
forest <- randomForest(x = train[seq_len(20000), features], y = train$label[seq_len(20000)],
                       ntree = 100)
saveRDS(forest, file.path(args[2], "r_forest.rds"))
glm_model <- glm(label ~ ., data = train[c(features, "label")], family = binomial)
saveRDS(glm_model, file.path(args[2], "r_glm.rds"))
