module github.com/heraldhq/herald/deploy

go 1.26.0
