module berth.invalid/pause

go 1.24
