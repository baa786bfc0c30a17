module github.com/paceline/paceline/api

go 1.24
