module berth.invalid/nsfwd

go 1.24
