# cmake -DIMAGE=castor-tg.bin -P check-image.cmake
# Build-time check of the flat test-guest image against abi.h: the multiboot
# header at offset 0, struct tg_image_header at offset 64, and a file size that
# matches the header's load_end. A layout slip fails the build, not a test run.

if(NOT IMAGE)
	message(FATAL_ERROR "check-image: pass -DIMAGE=<castor-tg.bin>")
endif()
file(SIZE ${IMAGE} size)
if(size LESS 144)
	message(FATAL_ERROR "check-image: ${IMAGE} is only ${size} bytes")
endif()
file(READ ${IMAGE} hex LIMIT 144 HEX)

# Little-endian field at byte `offset`, `bytes` long, as a hex string (no 0x).
function(le_hex offset bytes out)
	set(v "")
	math(EXPR last "${offset} + ${bytes} - 1")
	foreach(i RANGE ${offset} ${last})
		math(EXPR pos "${i} * 2")
		string(SUBSTRING "${hex}" ${pos} 2 b)
		set(v "${b}${v}")
	endforeach()
	set(${out} "${v}" PARENT_SCOPE)
endfunction()

function(le_num offset bytes out)
	le_hex(${offset} ${bytes} h)
	math(EXPR n "0x${h}")
	set(${out} ${n} PARENT_SCOPE)
endfunction()

# expect(<message> <if() condition...>)
function(expect what)
	if(NOT (${ARGN}))
		message(FATAL_ERROR "check-image: ${IMAGE}: ${what}")
	endif()
endfunction()

le_hex(0 4 mb_magic)
expect("no multiboot magic at offset 0" mb_magic STREQUAL 1badb002)

set(h 64) # TG_IMAGE_HDR_OFFSET
le_hex(${h} 8 magic)
expect("no tg_image_header magic (CSTRIMG1) at offset 64" magic STREQUAL 31474d4952545343)
math(EXPR o "${h} + 8")
le_num(${o} 4 version)
math(EXPR o "${h} + 12")
le_num(${o} 4 header_size)
math(EXPR o "${h} + 16")
le_num(${o} 8 load_addr)
math(EXPR o "${h} + 24")
le_num(${o} 8 entry64)
math(EXPR o "${h} + 32")
le_num(${o} 8 load_end)
math(EXPR o "${h} + 40")
le_num(${o} 8 bss_end)
math(EXPR o "${h} + 48")
le_num(${o} 8 rw_gpa)
math(EXPR o "${h} + 56")
le_num(${o} 8 rw_bytes)
math(EXPR o "${h} + 64")
le_num(${o} 8 state_gpa)
math(EXPR o "${h} + 72")
le_num(${o} 4 max_cpus)

math(EXPR file_end "${load_addr} + ${size}")
math(EXPR rw_end "${rw_gpa} + ${rw_bytes}")
math(EXPR state_end "${state_gpa} + ${max_cpus} * 4096")

expect("version ${version} is not 1" version EQUAL 1)
expect("header_size ${header_size} is not 80" header_size EQUAL 80)
expect("load_addr ${load_addr} is not 0x100000" load_addr EQUAL 1048576)
expect("file size ${size} does not match load_end ${load_end}" file_end EQUAL load_end)
expect("entry64 ${entry64} outside the file" entry64 GREATER_EQUAL load_addr AND entry64 LESS load_end)
expect("rw area [${rw_gpa}, ${rw_end}) not within [load_end, bss_end)"
	rw_gpa GREATER_EQUAL load_end AND rw_end LESS_EQUAL bss_end)
expect("state pages not within the rw area" state_gpa GREATER_EQUAL rw_gpa AND state_end LESS_EQUAL rw_end)
expect("max_cpus ${max_cpus} is not 8" max_cpus EQUAL 8)
