library(testthat)
library(serveRless)
test_check("serveRless")
